"""A throw-away PostgreSQL server for the cluster tests: Debian's packages, a data directory
in a temporary folder, a free port on 127.0.0.1 and a socket directory of its own, run as the
unprivileged ``postgres`` user when the tests run as root (PostgreSQL refuses root).

``start()`` raises ``Unavailable`` with the reason when PostgreSQL is not installed or does
not start; the fixture turns that into a skip that says so (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: How long PostgreSQL may take to answer after it starts.
READY_TIMEOUT = 30.0
USER = "jackrabbit"


class Unavailable(Exception):
    """PostgreSQL cannot be run here; the message says why."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Postgres:
    """One PostgreSQL server; ``dsn(db)`` reaches database ``db`` (``create(db)`` first)."""

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not binaries:
            raise Unavailable("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = Path(binaries[-1]).parent
        self.as_user: list[str] = []
        owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no postgres user") from None
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="jackrabbit-pg-"))
        if owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.data = self.root / "data"
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.root / "postgres.log"

    def start(self) -> None:
        initdb = subprocess.run(
            [*self.as_user, str(self.bin / "initdb"), "-D", str(self.data), "-U", USER,
             "--auth=trust", "--no-sync", "-E", "UTF8"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise Unavailable(f"initdb failed: {initdb.stderr.strip()[-500:]}")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [*self.as_user, str(self.bin / "postgres"), "-D", str(self.data),
                 "-p", str(self.port), "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
                 "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        import psycopg

        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise Unavailable(f"PostgreSQL did not start: {exc}; {self.tail()}") from None
                time.sleep(0.1)

    def dsn(self, db: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{db}"

    def create(self, db: str) -> str:
        """A new empty database; its DSN."""
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        return self.dsn(db)

    def tail(self) -> str:
        try:
            return self.log.read_text("utf-8", "replace")[-1500:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)  # fast shutdown
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)
