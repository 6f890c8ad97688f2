"""Black-box control of a jackrabbit server: start it, find its port, stop, kill, restart.

A ``ServerProcess`` runs ``python -m jackrabbit_<shell>`` (or any command given) with a fresh
``--db`` in a temporary directory, ``--port 0`` and certificates made with ``trustme``, and
waits for the ready line ``jackrabbit listening on wss://HOST:PORT`` (CONTRACT §1) on stdout.
Nothing here imports the project: the server is reached only through its command line, its
stdout and its port. An ``ExternalServer`` is the same surface for a server someone else runs
(``python -m conformance --url ... --ca ...``); it cannot be restarted, killed or read.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

#: The ready line of CONTRACT §1. HOST may be a bracketed IPv6 address.
READY_LINE = re.compile(r"^jackrabbit listening on wss://(\[[^\]]+\]|[^:/\s]+):(\d+)\s*$")

#: How long a server may take to print its ready line.
START_TIMEOUT = 20.0
#: How long SIGTERM may take to end a server before it is killed (and the test fails).
STOP_TIMEOUT = 10.0

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Certificates:
    """A private CA and a server certificate for localhost, 127.0.0.1 and ::1, as PEM files."""

    ca: Path
    chain: Path
    key: Path

    @classmethod
    def make(cls, folder: Path) -> Certificates:
        import trustme

        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
        paths = cls(folder / "ca.pem", folder / "chain.pem", folder / "private_key.pem")
        ca.cert_pem.write_to_path(str(paths.ca))
        cert.private_key_pem.write_to_path(str(paths.key))
        with open(paths.chain, "wb") as chain:
            for blob in cert.cert_chain_pems:
                chain.write(blob.bytes())
        return paths


def client_context(ca: str | Path) -> ssl.SSLContext:
    """A TLS client context that trusts only ``ca``."""
    return ssl.create_default_context(cafile=str(ca))


class Target:
    """Where a server listens and how to trust it; what every scenario needs."""

    host: str
    port: int
    ca: Path
    #: True when the suite started the server (so it may restart, kill and read it).
    owned: bool = False

    def url(self, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"wss://{host}:{self.port}{path}"

    def queue_url(self, name: str | None) -> str:
        """The upgrade URL of queue ``name`` (None: the default queue at ``/``)."""
        return self.url("/" if name is None else f"/queues/{name}")

    def ssl_context(self) -> ssl.SSLContext:
        return client_context(self.ca)


class ExternalServer(Target):
    """A server the suite did not start: reachable, but never restarted or killed."""

    def __init__(self, url: str, ca: str | Path) -> None:
        parts = urlsplit(url)
        if parts.scheme != "wss" or not parts.hostname:
            raise ValueError(f"expected wss://HOST:PORT, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 443
        self.ca = Path(ca)
        self.owned = False


@dataclass
class ServerProcess(Target):
    """One server subprocess and its database, which outlives restarts.

    ``start()`` (again after ``stop()``/``kill()``) runs the server on the same ``--db``; the
    port may change at each start. ``stdout_lines`` keeps everything the server printed.
    """

    shell: str
    workdir: Path
    certs: Certificates
    args: Sequence[str] = ()
    #: Replaces the standard flags (host, port, db, certificates) when given.
    flags: Sequence[str] | None = None
    db: Path = field(init=False)
    stdout_lines: list[str] = field(default_factory=list, init=False)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.db = self.workdir / "db"
        self.ca = self.certs.ca
        self.owned = True
        self.host = "127.0.0.1"
        self.port = 0
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr_path = self.workdir / "stderr.log"
        self._starts = 0

    # -- life cycle -----------------------------------------------------------------------

    def command(self) -> list[str]:
        flags = self.flags if self.flags is not None else [
            "--host", "127.0.0.1", "--port", "0", "--db", str(self.db),
            "--chain-cert", str(self.certs.chain), "--private-key", str(self.certs.key),
        ]  # fmt: skip
        return [sys.executable, "-m", f"jackrabbit_{self.shell}", *flags, *self.args]

    def start(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        """Run the server and wait for its ready line; raise ``RuntimeError`` if none comes."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("server already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # The shells must be importable whether or not the project is installed. Python's
        # own output buffering stays as is: the contract says the server flushes the line.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.pop("PYTHONUNBUFFERED", None)
        self._starts += 1
        stderr = open(self._stderr_path, "ab")  # noqa: SIM115 - the child owns it
        stderr.write(f"--- start {self._starts}: {' '.join(self.command())}\n".encode())
        stderr.flush()
        self._lines = queue.Queue()
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        stderr.close()
        threading.Thread(
            target=self._read_stdout, args=(self.process, self._lines), daemon=True
        ).start()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise RuntimeError(
                    f"no ready line within {timeout}s from {self.shell}; "
                    f"stdout={self.stdout_lines!r}\n{self.stderr_tail()}"
                )
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = self.process.wait()
                raise RuntimeError(
                    f"server exited with {code} before its ready line; "
                    f"stdout={self.stdout_lines!r}\n{self.stderr_tail()}"
                )
            match = READY_LINE.match(line)
            if match:
                self.host = match.group(1).strip("[]")
                self.port = int(match.group(2))
                if self.port == 0:
                    raise RuntimeError(f"ready line shows port 0: {line!r}")
                return self

    def _read_stdout(
        self, process: subprocess.Popen[bytes], lines: queue.Queue[str | None]
    ) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.stdout_lines.append(text)
            lines.put(text)
        lines.put(None)

    def next_stdout_line(self, timeout: float) -> str | None:
        """The next line printed after the ready line (None at EOF); ``TimeoutError`` if none."""
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no stdout line within {timeout}s") from None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def send_signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the process to end; ``subprocess.TimeoutExpired`` if it does not."""
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Ask the server to stop; kill it if it has not within ``timeout``. Its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the server (to its whole process group) and reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        self.process.wait(STOP_TIMEOUT)

    def restart(self) -> ServerProcess:
        """Stop (SIGTERM) if running, then start again on the same ``--db``."""
        if self.running:
            self.stop()
        return self.start()

    def stderr_tail(self, lines: int = 40) -> str:
        try:
            text = self._stderr_path.read_text("utf-8", "replace")
        except OSError:
            return "(no stderr)"
        return "stderr:\n" + "\n".join(text.splitlines()[-lines:])


class Agent:
    """A client program from ``agents.py`` run as its own process, read line by line."""

    SCRIPT = Path(__file__).with_name("agents.py")

    def __init__(self, verb: str, url: str, ca: str | Path, *args: str) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._eof = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, str(self.SCRIPT), verb, "--url", url, "--ca", str(ca), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)
        self._eof.set()

    def wait_for(self, wanted: str | re.Pattern[str], timeout: float) -> str:
        """Read lines until one starts with (or matches) ``wanted``; ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line {wanted!r} within {timeout}s: {self.lines[-5:]!r}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise EOFError(f"agent ended before {wanted!r}: {self.lines[-5:]!r}")
            if isinstance(wanted, str) and line.startswith(wanted):
                return line
            if isinstance(wanted, re.Pattern) and wanted.match(line):
                return line

    def kill(self) -> None:
        """SIGKILL the agent: its sockets vanish with no close frame."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(STOP_TIMEOUT)

    def finish(self, timeout: float) -> list[str]:
        """Wait for the agent to end on its own (killing it after ``timeout``); all its lines."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        # The reader thread drains stdout to EOF once the process is gone.
        if not self._eof.wait(STOP_TIMEOUT):
            raise TimeoutError("agent stdout did not end")
        return self.lines

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read().decode("utf-8", "replace")[-2000:]
