"""Fixtures for the asyncio shell: trustme certificates, in-process servers on 127.0.0.1 (run
inside the test's own ``asyncio.run``), and ``python -m jackrabbit_asyncio`` subprocesses.

The directory is named ``shell_asyncio``, not ``asyncio``: a test package named like a
standard library module can shadow it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme

from jackrabbit_asyncio import Client, Server, serve
from jackrabbit_core import Config

ROOT = Path(__file__).absolute().parents[2]
HOST = "127.0.0.1"
#: Generous bound for anything a test waits for (the machine may be busy).
WAIT = 15.0

T = TypeVar("T")


@dataclass(frozen=True)
class Certs:
    ca: str
    chain: str
    key: str


def write_certs(folder: Path, ca: trustme.CA | None = None) -> Certs:
    ca = ca or trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = Certs(str(folder / "ca.pem"), str(folder / "chain.pem"), str(folder / "key.pem"))
    ca.cert_pem.write_to_path(paths.ca)
    cert.private_key_pem.write_to_path(paths.key)
    with open(paths.chain, "wb") as chain:
        for blob in cert.cert_chain_pems:
            chain.write(blob.bytes())
    return paths


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return write_certs(tmp_path_factory.mktemp("certs"))


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run ``coro`` in a fresh event loop, bounded by ``timeout`` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


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


@dataclass
class Running:
    """An in-process server and how to reach it."""

    server: Server
    url: str
    ca: str

    async def client(self, queue: str = "default", **kwargs: Any) -> Client:
        return await Client.connect(self.url, queue, ca=self.ca, **kwargs)


@contextlib.asynccontextmanager
async def running(certs: Certs, db: Path, **overrides: Any) -> AsyncIterator[Running]:
    """A server on this loop for the ``async with`` block, shut down at its end."""
    server = await serve(config(certs, db, **overrides))
    task = asyncio.ensure_future(server.serve_forever())
    try:
        yield Running(server, f"wss://{HOST}:{server.port}", certs.ca)
    finally:
        await server.shutdown()
        await task


async def eventually(predicate: Any, timeout: float = WAIT) -> None:
    """Wait until ``predicate()`` is true (polled: for state with no event to wait on)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class Process:
    """``python -m jackrabbit_asyncio ARGS`` with its stdout lines on a queue."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        environ = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jackrabbit_asyncio", *args],
            cwd=cwd,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self, timeout: float = WAIT) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"no line from the server; stderr: {err}") from None

    def port(self) -> int:
        """Wait for the ready line; return its port."""
        line = self.line()
        assert line.startswith("jackrabbit listening on wss://"), line
        return int(line.rsplit(":", 1)[1])

    def terminate(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Send ``sig``; return the exit status and stderr."""
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


Spawn = Callable[..., Process]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """``spawn(*args)`` starts ``python -m jackrabbit_asyncio`` in ``tmp_path``; every
    process still running at the end is killed."""
    started: list[Process] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Process:
        process = Process(*args, cwd=tmp_path, env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def run_cli(*args: str, cwd: Path, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "jackrabbit_asyncio", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
