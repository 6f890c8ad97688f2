"""Fixtures for the client suite: each scenario runs against both runtimes' ``Client``
through one blocking interface, over real TLS to a real server on 127.0.0.1.

- ``runtime`` is parametrized ``asyncio`` / ``threads``. The threads client is used as it is;
  the asyncio client runs on an event loop in its own thread, each call a coroutine sent
  there and waited for (bounded by ``WAIT``), so a scenario is written once.
- ``start`` runs the threads shell's server in this process (restartable on its port, for
  reconnections); the server is not what these tests are about.
- ``doorman`` is a raw TLS server that records upgrade requests and answers each with a fixed
  HTTP status (401, 403...), for what a client does with credentials before any server checks
  them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar

import pytest
from wsproto.utilities import generate_accept_token

import jackrabbit_asyncio
import jackrabbit_threads
from jackrabbit_asyncio import commands as asyncio_commands
from jackrabbit_core import Config
from jackrabbit_host.cli import AddCommand, TakeCommand
from jackrabbit_threads import commands as threads_commands

from ..support import HOST, WAIT, Certs, write_certs

T = TypeVar("T")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return write_certs(tmp_path_factory.mktemp("certs"))


# -- one blocking interface over both clients ------------------------------------------------


class Received(Protocol):
    """A delivered message, as scenarios see it."""

    seq: int
    data: bytes
    redelivered: bool

    def ack(self) -> None: ...


class Client(Protocol):
    """What scenarios call: the threads client's API (the asyncio one, made blocking)."""

    role: str | None
    epoch: int | None
    close_code: int | None

    def add(self, data: bytes, key: str | None = None) -> int: ...
    def add_all(self, payloads: list[bytes], key: str | None = None) -> list[int]: ...
    def take(self, prefetch: int = 1000) -> Iterator[Received]: ...
    def handover(self) -> int: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class Runtime(Protocol):
    name: str
    clients: list[Client]

    def connect(self, url: str, queue: str | None = None, **options: Any) -> Client: ...
    def run_add(self, command: AddCommand, stdin: TextIO | None, stdout: TextIO) -> int: ...
    def run_take(self, command: TakeCommand, stdout: TextIO) -> int: ...


class ThreadsClient:
    """The threads client, with a pipelined ``add_all`` (one thread per add in flight)."""

    def __init__(self, client: jackrabbit_threads.Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def add_all(self, payloads: list[bytes], key: str | None = None) -> list[int]:
        with ThreadPoolExecutor(32) as pool:
            return list(pool.map(lambda data: self.client.add(data, key), payloads))

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        assert self.client._link is not None
        self.client._link.abort()


class ThreadsRuntime:
    name = "threads"

    def __init__(self) -> None:
        self.clients: list[Client] = []

    def connect(self, url: str, queue: str | None = None, **options: Any) -> Client:
        client = ThreadsClient(jackrabbit_threads.Client.connect(url, queue, **options))
        self.clients.append(client)
        return client

    def run_add(self, command: AddCommand, stdin: TextIO | None, stdout: TextIO) -> int:
        return threads_commands.run_add(command, stdin, stdout)

    def run_take(self, command: TakeCommand, stdout: TextIO) -> int:
        return threads_commands.run_take(command, stdout)


@dataclass
class AsyncioMessage:
    seq: int
    data: bytes
    redelivered: bool
    message: jackrabbit_asyncio.Message = field(repr=False)
    runtime: AsyncioRuntime = field(repr=False)

    def ack(self) -> None:
        self.runtime.call(self.message.ack())


class AsyncioClient:
    """The asyncio client, each call run on the runtime's loop."""

    def __init__(self, runtime: AsyncioRuntime, client: jackrabbit_asyncio.Client) -> None:
        self.runtime = runtime
        self.client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def add(self, data: bytes, key: str | None = None) -> int:
        return self.runtime.call(self.client.add(data, key))

    def add_all(self, payloads: list[bytes], key: str | None = None) -> list[int]:
        async def gather() -> list[int]:
            return await asyncio.gather(*(self.client.add(data, key) for data in payloads))

        return self.runtime.call(gather())

    def take(self, prefetch: int = 1000) -> Iterator[Received]:
        subscription = self.client.take(prefetch)

        async def start() -> jackrabbit_asyncio.Subscription:
            return await subscription

        self.runtime.call(start())
        return self._messages(subscription)

    def _messages(self, subscription: jackrabbit_asyncio.Subscription) -> Iterator[Received]:
        async def next_one() -> jackrabbit_asyncio.Message | None:
            try:
                return await anext(subscription)
            except StopAsyncIteration:
                return None

        while (message := self.runtime.call(next_one())) is not None:
            yield AsyncioMessage(
                message.seq, message.data, message.redelivered, message, self.runtime
            )

    def handover(self) -> int:
        return self.runtime.call(self.client.handover())

    def close(self) -> None:
        self.runtime.call(self.client.close())

    def abort(self) -> None:
        async def abort() -> None:
            assert self.client._link is not None
            self.client._link.abort()

        self.runtime.call(abort())


class AsyncioRuntime:
    name = "asyncio"

    def __init__(self) -> None:
        self.clients: list[Client] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-asyncio")
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop; wait (at most ``WAIT``) for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def connect(self, url: str, queue: str | None = None, **options: Any) -> Client:
        client = AsyncioClient(
            self, self.call(jackrabbit_asyncio.Client.connect(url, queue, **options))
        )
        self.clients.append(client)
        return client

    def run_add(self, command: AddCommand, stdin: TextIO | None, stdout: TextIO) -> int:
        return self.call(asyncio_commands.run_add(command, stdin, stdout))

    def run_take(self, command: TakeCommand, stdout: TextIO) -> int:
        return self.call(asyncio_commands.run_take(command, stdout))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


@pytest.fixture(params=["asyncio", "threads"])
def runtime(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """Each runtime in turn; the clients a test leaves open are closed after it."""
    chosen = ThreadsRuntime() if request.param == "threads" else AsyncioRuntime()
    yield chosen
    for client in chosen.clients:
        client.close()
    if isinstance(chosen, AsyncioRuntime):
        chosen.stop()


# -- a real server -----------------------------------------------------------------------------


@dataclass
class Running:
    server: jackrabbit_threads.Server
    thread: threading.Thread
    port: int
    ca: str

    @property
    def url(self) -> str:
        return f"wss://{HOST}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


Start = Callable[..., Running]


@pytest.fixture
def start(certs: Certs, tmp_path: Path) -> Iterator[Start]:
    """``start(**config)``: a threads-shell server in this process, on an ephemeral port (or
    ``port=``), its store under ``tmp_path``; all are stopped at the end."""
    started: list[Running] = []

    def start_one(**overrides: Any) -> Running:
        settings: dict[str, Any] = {
            "host": HOST,
            "port": 0,
            "db": str(tmp_path / "db"),
            "chain_cert": certs.chain,
            "private_key": certs.key,
            "fsync": "never",
        }
        settings.update(overrides)
        server = jackrabbit_threads.serve(Config(**settings))
        thread = threading.Thread(target=server.serve_forever, name="test-server")
        thread.start()
        running = Running(server, thread, server.port, certs.ca)
        started.append(running)
        return running

    yield start_one
    for running in started:
        if running.thread.is_alive():
            running.stop()


# -- a raw TLS server that refuses every upgrade ----------------------------------------------


class Doorman:
    """A raw TLS server on 127.0.0.1 that records each request head and answers it with
    ``status`` and ``reason``; with 101, it accepts the WebSocket upgrade, then reads and
    never answers (``received`` counts the bytes)."""

    def __init__(self, certs: Certs, status: int, reason: str, port: int = 0) -> None:
        self.ca = certs.ca
        self.status = status
        self.reason = reason
        self.heads: list[bytes] = []
        self.received = 0
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(certs.chain, certs.key)
        self._listener = socket.create_server((HOST, port))
        self.port = self._listener.getsockname()[1]
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name="test-doorman", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"wss://{HOST}:{self.port}"

    def _serve(self) -> None:
        while not self._stopped:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), raw:
                raw.settimeout(WAIT)
                with self._context.wrap_socket(raw, server_side=True) as tls:
                    self._answer(tls)

    def _answer(self, tls: ssl.SSLSocket) -> None:
        reader = tls.makefile("rb")
        lines = []
        while (line := reader.readline(65536)) not in (b"\r\n", b""):
            lines.append(line)
        self.heads.append(b"".join(lines))
        if self.status == 101:
            key = self.header(len(self.heads) - 1, b"sec-websocket-key") or b""
            tls.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + generate_accept_token(key)
                + b"\r\n\r\n"
            )
            while chunk := reader.read1(65536):
                self.received += len(chunk)
            return
        body = f"{self.reason}\n".encode()
        phrase = {401: "Unauthorized", 403: "Forbidden"}.get(self.status, "Refused")
        extra = b"WWW-Authenticate: Bearer\r\n" if self.status == 401 else b""
        tls.sendall(
            f"HTTP/1.1 {self.status} {phrase}\r\n".encode()
            + extra
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )

    def header(self, index: int, name: bytes) -> bytes | None:
        """The value of header ``name`` in request ``index`` (None if absent)."""
        for line in self.heads[index].split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # ends a blocked accept()
        self._listener.close()
        self._thread.join(WAIT)


MakeDoorman = Callable[..., Doorman]


@pytest.fixture
def doorman(certs: Certs) -> Iterator[MakeDoorman]:
    """``doorman(status, reason, port=0)``: a raw TLS server answering every request so."""
    made: list[Doorman] = []

    def make(status: int, reason: str, port: int = 0) -> Doorman:
        made.append(Doorman(certs, status, reason, port))
        return made[-1]

    yield make
    for one in made:
        one.stop()
