"""Fixtures of the shell suite: every test that takes ``shell`` runs once per shell.

- ``shell`` is ``asyncio`` or ``threads``; ``Shell`` says what differs between them that a
  test may expect (a reader thread per connection, or none).
- ``start(**config)`` runs that shell's server in this process (the asyncio one on an event
  loop in a thread of its own), on 127.0.0.1 and a free port; ``Running.stop()`` shuts it
  down. Tests reach it as any client would: the threads ``Client`` (the clients themselves are
  ``tests/clients``'), raw TLS peers (``wire``), plain sockets.
- ``spawn(*flags)`` runs ``python -m jackrabbit_<shell>`` in a process of its own, for what
  must be measured alone (memory, descriptors, threads) or seen from outside (stdout, stderr,
  exit status, signals).

The directory is named ``shells``, not ``asyncio`` or ``threading``: a test package named like
a standard library module can shadow it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import jackrabbit_asyncio
import jackrabbit_threads
from jackrabbit_core import Config
from jackrabbit_threads import Client

from ..support import (
    HOST,
    WAIT,
    Certs,
    Programs,
    ServerProcess,
    server_flags,
    write_certs,
)


@dataclass(frozen=True)
class Shell:
    """One shell, as the tests see it."""

    name: str
    #: Threads its server runs per established connection.
    threads_per_connection: int

    @property
    def module(self) -> str:
        return f"jackrabbit_{self.name}"


SHELLS = {"asyncio": Shell("asyncio", 0), "threads": Shell("threads", 1)}


@pytest.fixture(params=list(SHELLS))
def shell(request: pytest.FixtureRequest) -> Shell:
    return SHELLS[request.param]


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return write_certs(tmp_path_factory.mktemp("certs"))


def eventually(check: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Whether ``check()`` comes true within ``timeout`` seconds (polled: for state that has
    no event to wait on, such as a process's memory or descriptors)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


# -- in this process ------------------------------------------------------------------------------


class Running:
    """A server of one shell running in this process, and how to reach it."""

    def __init__(self, shell: Shell, config: Config, ca: str) -> None:
        self.shell = shell
        self.config = config
        self.ca = ca
        self._loop: asyncio.AbstractEventLoop | None = None
        if shell.name == "asyncio":
            loop = self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, name="test-asyncio-server")
            self._thread.start()
            self._aserver = self._call(jackrabbit_asyncio.serve(config))
            self._serving = asyncio.run_coroutine_threadsafe(self._aserver.serve_forever(), loop)
            self.port = self._aserver.port
        else:
            self._tserver = jackrabbit_threads.serve(config)
            self._thread = threading.Thread(
                target=self._tserver.serve_forever, name="test-threads-server"
            )
            self._thread.start()
            self.port = self._tserver.port
            # serve_forever starts its threads first: let counts taken by a test include them.
            assert eventually(
                lambda: self._tserver._timer_thread.is_alive()
                and self._tserver._store_thread.is_alive()
            )
        self.running = True

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(WAIT)

    @property
    def url(self) -> str:
        return f"wss://{HOST}:{self.port}"

    def client(self, queue: str = "default", **kwargs: Any) -> Client:
        return Client.connect(self.url, queue, ca=self.ca, **kwargs)

    def stop(self) -> None:
        """Shut the server down (closing clients with 1001) and end its thread."""
        if not self.running:
            return
        self.running = False
        if self._loop is not None:
            self._call(self._aserver.shutdown())
            self._serving.result(WAIT)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(WAIT)
            self._loop.close()
        else:
            self._tserver.shutdown()
            self._thread.join(WAIT)
        assert not self._thread.is_alive()


Start = Callable[..., Running]


def config(certs: Certs, db: Path, **overrides: Any) -> Config:
    settings: dict[str, Any] = {
        "host": HOST,
        "port": 0,
        "db": str(db),
        "chain_cert": certs.chain,
        "private_key": certs.key,
        "fsync": "never",
    }
    settings.update(overrides)
    return Config(**settings)


@pytest.fixture
def start(shell: Shell, certs: Certs, tmp_path: Path) -> Iterator[Start]:
    """``start(**config)``: the shell's server in this process; all are stopped at the end."""
    started: list[Running] = []

    def start_one(**overrides: Any) -> Running:
        overrides.setdefault("db", tmp_path / f"db{len(started)}")
        running = Running(shell, config(certs, **overrides), certs.ca)
        started.append(running)
        return running

    yield start_one
    for running in started:
        running.stop()


# -- in a process of its own ----------------------------------------------------------------------


class Spawned(ServerProcess):
    """``python -m jackrabbit_<shell>``, and how to reach it once ready."""

    def __init__(self, shell: Shell, *args: str, cwd: Path, env: dict[str, str] | None) -> None:
        super().__init__(shell.module, *args, cwd=cwd, env=env)
        self.shell = shell
        self.ca = ""
        self.port_number = 0

    def ready(self, ca: str) -> Spawned:
        """Wait for the ready line; the server is then reached with ``ca``."""
        self.port_number = self.port()
        self.ca = ca
        return self

    @property
    def url(self) -> str:
        return f"wss://{HOST}:{self.port_number}"

    def client(self, queue: str = "default", **kwargs: Any) -> Client:
        return Client.connect(self.url, queue, ca=self.ca, **kwargs)

class Spawner(Programs):
    """``spawn(*flags, env=None)``: a server process with a fresh db and the test certificates,
    once it is ready; ``spawn.raw(*args)``: one started with ``args`` alone."""

    def __init__(self, shell: Shell, certs: Certs, cwd: Path) -> None:
        super().__init__(shell.module, cwd)
        self.shell = shell
        self.certs = certs

    def raw(self, *args: str, env: dict[str, str] | None = None) -> Spawned:
        return self.track(Spawned(self.shell, *args, cwd=self.cwd, env=env))

    def __call__(self, *flags: str, env: dict[str, str] | None = None) -> Spawned:
        db = self.cwd / f"db{len(self.started)}"
        return self.raw(*server_flags(self.certs, db, *flags), env=env).ready(self.certs.ca)


@pytest.fixture
def spawn(shell: Shell, certs: Certs, tmp_path: Path) -> Iterator[Spawner]:
    """Servers in processes of their own (``Spawner``); all are killed at the end."""
    spawner = Spawner(shell, certs, tmp_path)
    yield spawner
    spawner.kill_all()
