"""Test helpers both shells' suites use: trustme certificates and ``python -m SHELL``
subprocesses whose stdout lines arrive on a queue (every wait bounded)."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import trustme

ROOT = Path(__file__).absolute().parents[1]
HOST = "127.0.0.1"
#: Generous bound for anything a test waits for (the machine may be busy).
WAIT = 15.0


@dataclass(frozen=True)
class Certs:
    ca: str
    chain: str
    key: str


def write_certs(folder: Path, ca: trustme.CA | None = None) -> Certs:
    """A CA and a server certificate for 127.0.0.1/localhost, as PEM files in ``folder``."""
    ca = ca or trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = Certs(str(folder / "ca.pem"), str(folder / "chain.pem"), str(folder / "key.pem"))
    ca.cert_pem.write_to_path(paths.ca)
    cert.private_key_pem.write_to_path(paths.key)
    with open(paths.chain, "wb") as chain:
        for blob in cert.cert_chain_pems:
            chain.write(blob.bytes())
    return paths


P = TypeVar("P", bound="ServerProcess")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(extra or {})}


class ServerProcess:
    """``python -m MODULE ARGS`` with its stdout lines on a queue."""

    def __init__(
        self, module: str, *args: str, cwd: Path, env: dict[str, str] | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=_env(env),
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
        """The next stdout line; fails the test (with stderr) if none comes in time."""
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

    def _status(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} line")

    def threads(self) -> int:
        """The process's thread count, from /proc."""
        return self._status("Threads")

    def rss_mb(self) -> float:
        """The process's resident memory in MB, from /proc."""
        return self._status("VmRSS") / 1024

    def fds(self) -> int:
        """The process's open file descriptors, from /proc."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def sockets(self) -> int:
        """The process's open sockets (listeners and connections), from /proc."""
        folder = f"/proc/{self.proc.pid}/fd"
        count = 0
        for name in os.listdir(folder):
            with contextlib.suppress(FileNotFoundError):  # closed since the listing
                count += os.readlink(f"{folder}/{name}").startswith("socket:")
        return count


class Programs:
    """Runs ``python -m MODULE`` in ``cwd``: servers (each killed by ``kill_all``) and
    commands run to completion."""

    def __init__(self, module: str, cwd: Path) -> None:
        self.module = module
        self.cwd = cwd
        self.started: list[ServerProcess] = []

    def track(self, process: P) -> P:
        """Have ``kill_all`` kill ``process`` too."""
        self.started.append(process)
        return process

    def server(self, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
        return self.track(ServerProcess(self.module, *args, cwd=self.cwd, env=env))

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run_module(self.module, *args, cwd=cwd or self.cwd)

    def kill_all(self) -> None:
        for process in self.started:
            process.kill()


def server_flags(certs: Certs, db: Path, *extra: str) -> list[str]:
    """Flags for a server on 127.0.0.1, a free port, ``db`` and the test certificates."""
    return [
        "--host", HOST, "--port", "0", "--db", str(db),
        "--chain-cert", certs.chain, "--private-key", certs.key, "--fsync", "never", *extra,
    ]  # fmt: skip


def run_module(
    module: str, *args: str, cwd: Path, timeout: float = WAIT
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m MODULE ARGS`` to completion, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
