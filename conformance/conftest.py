"""Fixtures of the conformance suite: which servers to test, and clients to talk to them.

Every scenario takes ``shell`` (through ``server`` or ``spawn``), so it runs once per shell:
``asyncio`` and ``threads`` by default, only those named in ``JACKRABBIT_SHELLS``
(comma-separated), or once against an outside server when ``JACKRABBIT_URL`` and
``JACKRABBIT_CA`` are set (``python -m conformance --url ... --ca ...`` sets them).

``server`` is one server per shell, shared by every scenario that can use it (each uses its
own queue names). ``spawn(*flags)`` starts a fresh server of its own (a new ``--db``) for
scenarios that need flags, restarts, kills or stdout; against an outside server those
scenarios are skipped.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .client import Client
from .harness import Certificates, ExternalServer, ServerProcess, Target

SHELLS = ("asyncio", "threads")
EXTERNAL = "external"

CANNOT_SPAWN = (
    "needs a server of its own (flags, restart, kill or stdout), which the suite cannot do "
    "against an outside server given with --url"
)


def _shells() -> list[str]:
    if os.environ.get("JACKRABBIT_URL"):
        return [EXTERNAL]
    chosen = os.environ.get("JACKRABBIT_SHELLS", "")
    names = [s.strip() for s in chosen.split(",") if s.strip()] or list(SHELLS)
    unknown = set(names) - set(SHELLS)
    if unknown:
        raise pytest.UsageError(f"JACKRABBIT_SHELLS: unknown shells {sorted(unknown)}")
    return names


@pytest.fixture(scope="session", params=_shells())
def shell(request: pytest.FixtureRequest) -> str:
    """The server implementation under test (``external`` for ``--url``)."""
    return str(request.param)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.make(tmp_path_factory.mktemp("certs"))


def _external() -> ExternalServer:
    url, ca = os.environ.get("JACKRABBIT_URL", ""), os.environ.get("JACKRABBIT_CA", "")
    if not ca:
        raise pytest.UsageError("JACKRABBIT_URL needs JACKRABBIT_CA (the CA file to trust)")
    return ExternalServer(url, ca)


class Spawner:
    """Starts fresh servers for one scenario and stops them all afterwards."""

    def __init__(self, shell: str, root: Path, certs: Certificates) -> None:
        self.shell = shell
        self.root = root
        self.certs = certs
        self.started: list[ServerProcess] = []

    def __call__(
        self, *args: str, start: bool = True, flags: list[str] | None = None
    ) -> ServerProcess:
        """A new server with extra ``args``; ``flags`` replaces the standard host, port,
        db and certificate flags (to test their spellings)."""
        if self.shell == EXTERNAL:
            pytest.skip(CANNOT_SPAWN)
        server = ServerProcess(
            self.shell, self.root / f"server{len(self.started)}", self.certs, args, flags
        )
        self.started.append(server)
        return server.start() if start else server

    def stop_all(self) -> None:
        for server in self.started:
            if server.running:
                try:
                    server.stop()
                except Exception:
                    server.kill()


@pytest.fixture
def spawn(shell: str, tmp_path: Path, certs: Certificates) -> Iterator[Spawner]:
    """``spawn(*flags)``: a fresh server with its own ``--db`` (skips against ``--url``)."""
    spawner = Spawner(shell, tmp_path, certs)
    yield spawner
    spawner.stop_all()


@pytest.fixture(scope="session")
def server(
    shell: str, tmp_path_factory: pytest.TempPathFactory, certs: Certificates
) -> Iterator[Target]:
    """The server of one shell shared by every scenario that needs no server of its own
    (each uses its own queues). If it dies, the next scenario to connect says so."""
    if shell == EXTERNAL:
        yield _external()
        return
    process = ServerProcess(shell, tmp_path_factory.mktemp(f"shared-{shell}"), certs)
    process.start()
    yield process
    alive = process.running
    tail = process.stderr_tail()
    code = process.stop()
    if not alive:
        pytest.fail(f"the shared {shell} server died during the run (exit {code})\n{tail}")


_RUN = uuid.uuid4().hex[:6]


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> str:
    """A queue name no other scenario (or earlier run against ``--url``) uses."""
    base = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:80]
    return f"c{_RUN}-{uuid.uuid4().hex[:6]}-{base}"


@pytest.fixture
def connect() -> Iterator[Callable[..., Client]]:
    """``connect(target, queue, **websockets_options)``: a ``Client`` closed after the test."""
    opened: list[Client] = []

    def open_client(target: Target, queue: str | None, **kwargs: Any) -> Client:
        if isinstance(target, ServerProcess) and target.process and not target.running:
            pytest.fail(
                f"the {target.shell} server has died (exit {target.process.returncode})\n"
                f"{target.stderr_tail()}"
            )
        client = Client.open(target, queue, **kwargs)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()
