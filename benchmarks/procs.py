"""Processes the benchmark starts: free loopback ports, waiting for a ready line, RSS and CPU
time of a process tree, and stopping what we started (by its own id or its own process group
only)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (``None`` if it is gone).
    The command name is in parentheses and may hold spaces: split after the last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by ``pid`` and its descendants, in seconds: user + system time
    of every thread, plus that of children they have reaped (so a child that exits between
    two readings is still counted). The difference of two readings is what the tree spent
    between them; the clock tick (usually 10 ms) is the resolution."""
    ticks = 0
    for p in process_tree(pid):
        fields = _stat_fields(p)
        if fields is not None:
            # after the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15)
            ticks += sum(int(x) for x in fields[11:15])
    return ticks / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, in bytes (0 if it is gone)."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


class ServerProcess:
    """A server we started: its output goes to a log file in its work directory; it runs in
    its own process group, which :meth:`stop` ends (and only that group)."""

    def __init__(self, name: str, argv: Sequence[str], workdir: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.workdir = workdir
        self.env = env
        self.log_path = workdir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.workdir,
                env=self.env,
                start_new_session=True,
            )
        finally:
            log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until the log matches ``pattern``; raise ``RuntimeError`` with the log's tail
        if the process exits or ``timeout`` passes first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = self.log_path.read_text(errors="replace")
            except OSError:
                text = ""
            match = regex.search(text)
            if match:
                return match
            if not self.running():
                raise RuntimeError(
                    f"{self.name} exited (code {self.proc.returncode if self.proc else '?'}) "
                    f"before it was ready:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.05)

    async def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> int | None:
        """Ask it to stop with ``sig``; after ``timeout`` kill its process group. Returns
        the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), timeout)
        # whatever is left in its own group (children that outlived it) goes too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.returncode is None:
            await self.proc.wait()
        return self.proc.returncode


async def wait_port(port: int, timeout: float, host: str = LOOPBACK) -> None:
    """Wait until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nothing listening on {host}:{port} after {timeout} s") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
