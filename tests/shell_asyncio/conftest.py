"""Fixtures for the asyncio shell: trustme certificates, in-process servers on 127.0.0.1 (run
inside the test's own ``asyncio.run``), and ``python -m jackrabbit_asyncio`` subprocesses.

The directory is named ``shell_asyncio``, not ``asyncio``: a test package named like a
standard library module can shadow it."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from jackrabbit_asyncio import Client, Server, serve
from jackrabbit_core import Config

from ..support import HOST, ROOT, WAIT, Certs, ServerProcess, run_module, write_certs

__all__ = ["HOST", "ROOT", "WAIT", "Certs", "write_certs"]

T = TypeVar("T")


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


class Process(ServerProcess):
    """``python -m jackrabbit_asyncio ARGS`` with its stdout lines on a queue."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        super().__init__("jackrabbit_asyncio", *args, cwd=cwd, env=env)


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
    return run_module("jackrabbit_asyncio", *args, cwd=cwd, timeout=timeout)
