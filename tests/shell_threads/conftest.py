"""Fixtures for the threads shell: trustme certificates, an in-process server on 127.0.0.1,
and a helper that runs ``python -m jackrabbit_threads`` as a subprocess."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from jackrabbit_core import Config
from jackrabbit_threads import Client, Server, serve

from ..support import HOST, ROOT, WAIT, Certs, ServerProcess, run_module, write_certs

__all__ = ["HOST", "ROOT", "WAIT", "Certs", "write_certs"]


def settle_threads(target: int) -> int:
    """Wait (up to WAIT) for this process's thread count to drop to ``target``; return it."""
    deadline = time.monotonic() + WAIT
    while threading.active_count() > target and time.monotonic() < deadline:
        time.sleep(0.02)
    return threading.active_count()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return write_certs(tmp_path_factory.mktemp("certs"))


@dataclass
class Running:
    """An in-process server and how to reach it."""

    server: Server
    thread: threading.Thread
    url: str
    ca: str
    port: int

    def client(self, queue: str = "default", **kwargs: Any) -> Client:
        return Client.connect(self.url, queue, ca=self.ca, **kwargs)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


@dataclass
class Starter:
    certs: Certs
    tmp_path: Path
    started: list[Running] = field(default_factory=list)

    def __call__(self, **overrides: Any) -> Running:
        settings: dict[str, Any] = {
            "host": HOST,
            "port": 0,
            "db": str(self.tmp_path / f"db{len(self.started)}"),
            "chain_cert": self.certs.chain,
            "private_key": self.certs.key,
            "fsync": "never",
        }
        settings.update(overrides)
        server = serve(Config(**settings))
        thread = threading.Thread(target=server.serve_forever, name="test-server")
        thread.start()
        # serve_forever starts the writer, the store writer and the timer first (in that
        # order): let thread counts taken by a test include them.
        deadline = time.monotonic() + WAIT
        while not (server._timer_thread.is_alive() and server._store_thread.is_alive()):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        running = Running(server, thread, f"wss://{HOST}:{server.port}", self.certs.ca, server.port)
        self.started.append(running)
        return running


@pytest.fixture
def start(certs: Certs, tmp_path: Path) -> Iterator[Starter]:
    """``start(**config)`` runs a server in this process; all are shut down at the end."""
    starter = Starter(certs, tmp_path)
    yield starter
    for running in starter.started:
        if running.thread.is_alive():
            running.stop()


@pytest.fixture
def running(start: Starter) -> Running:
    return start()


class Process(ServerProcess):
    """``python -m jackrabbit_threads ARGS`` with its stdout lines on a queue."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        super().__init__("jackrabbit_threads", *args, cwd=cwd, env=env)

    def rss_mb(self) -> float:
        """The process's resident memory in MB, from /proc."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS line")


@dataclass
class Spawned:
    """A server in a process of its own (its memory and threads are its own), on 127.0.0.1."""

    process: Process
    port: int
    ca: str

    @property
    def url(self) -> str:
        return f"wss://{HOST}:{self.port}"

    def client(self, queue: str = "default", **kwargs: Any) -> Client:
        return Client.connect(self.url, queue, ca=self.ca, **kwargs)


@pytest.fixture
def spawn(certs: Certs, tmp_path: Path) -> Iterator[Callable[..., Spawned]]:
    """``spawn(*flags)`` runs ``python -m jackrabbit_threads`` with a fresh db; all are
    killed at the end."""
    started: list[Process] = []

    def start(*flags: str) -> Spawned:
        db = tmp_path / f"db{len(started)}"
        process = Process(
            "--host", HOST, "--port", "0", "--db", str(db), "--chain-cert", certs.chain,
            "--private-key", certs.key, "--fsync", "never", *flags,
            cwd=tmp_path,
        )  # fmt: skip
        started.append(process)
        return Spawned(process, process.port(), certs.ca)

    yield start
    for process in started:
        process.kill()


def run(*args: str, cwd: Path, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    return run_module("jackrabbit_threads", *args, cwd=cwd, timeout=timeout)
