"""Fixtures for the threads shell: trustme certificates, an in-process server on 127.0.0.1,
and a helper that runs ``python -m jackrabbit_threads`` as a subprocess."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from jackrabbit_core import Config
from jackrabbit_threads import Client, Server, serve

ROOT = Path(__file__).absolute().parents[2]
HOST = "127.0.0.1"
#: Generous bound for anything a test waits for.
WAIT = 15.0


def settle_threads(target: int) -> int:
    """Wait (up to WAIT) for this process's thread count to drop to ``target``; return it."""
    deadline = time.monotonic() + WAIT
    while threading.active_count() > target and time.monotonic() < deadline:
        time.sleep(0.02)
    return threading.active_count()


@dataclass(frozen=True)
class Certs:
    ca: str
    chain: str
    key: str


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = Certs(str(folder / "ca.pem"), str(folder / "chain.pem"), str(folder / "key.pem"))
    ca.cert_pem.write_to_path(paths.ca)
    cert.private_key_pem.write_to_path(paths.key)
    with open(paths.chain, "wb") as chain:
        for blob in cert.cert_chain_pems:
            chain.write(blob.bytes())
    return paths


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
        # serve_forever starts the store writer and the timer first: let thread counts
        # taken by a test include them.
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


class Process:
    """``python -m jackrabbit_threads ARGS`` with its stdout lines on a queue."""

    def __init__(self, *args: str, cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jackrabbit_threads", *args],
            cwd=cwd,
            env=env,
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
        return self.lines.get(timeout=timeout)

    def terminate(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Send ``sig``; return the exit status and stderr."""
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def threads(self) -> int:
        """The process's thread count, from /proc."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        raise AssertionError("no Threads line")


def run(*args: str, cwd: Path, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "jackrabbit_threads", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
