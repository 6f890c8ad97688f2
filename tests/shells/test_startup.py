"""Start-up and shutdown of ``python -m jackrabbit_<shell>`` as a user sees them: one line on
stderr and exit status 2 for what cannot start, ``--dev``, and a SIGTERM that closes clients
with 1001 and leaves a log with nothing worse than the connections' INFO lines."""

from __future__ import annotations

import re
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from jackrabbit_core.client import Subscribed
from jackrabbit_threads import Client

from ..support import HOST, Certs, server_flags, write_certs
from .conftest import Spawner
from .wire import Peer

pytestmark = pytest.mark.timeout(60)


def _taken_port() -> tuple[socket.socket, str]:
    taken = socket.create_server((HOST, 0))
    return taken, str(taken.getsockname()[1])


def _flags_with(tmp_path: Path, certs: Certs, *, db: Path | None = None, **swap: str) -> list[str]:
    flags = server_flags(certs, db or tmp_path / "db")
    for name, value in swap.items():
        flags[flags.index("--" + name.replace("_", "-")) + 1] = value
    return flags


#: Each case: the flags (from the test's tmp_path and certs) and what the one line must say.
CASES: dict[str, Callable[[Path, Certs], tuple[list[str], list[str]]]] = {
    "missing certificate": lambda tmp, certs: (
        _flags_with(tmp, certs, chain_cert=str(tmp / "nope.pem")),
        ["certificate file not found", "nope.pem"],
    ),
    "key of another certificate": lambda tmp, certs: (
        _flags_with(tmp, certs, private_key=write_certs(tmp, trustme.CA()).key),
        ["does not match"],
    ),
    "db is a file": lambda tmp, certs: (
        _flags_with(tmp, certs, db=tmp / "a-file" / "db"),
        ["cannot open the store", "a-file"],
    ),
    "bad port": lambda tmp, certs: (_flags_with(tmp, certs, port="99999"), ["port"]),
    "budget too small": lambda tmp, certs: (
        [*_flags_with(tmp, certs), "--memory-budget", "1MiB"],
        ["--memory-budget", "at least 8MiB"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_what_cannot_start_is_one_line_and_exit_2(
    spawn: Spawner, certs: Certs, tmp_path: Path, case: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    flags, needles = CASES[case](tmp_path, certs)
    result = spawn.run(*flags)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_a_port_in_use_is_one_line_and_exit_2(
    spawn: Spawner, certs: Certs, tmp_path: Path
) -> None:
    taken, port = _taken_port()
    with taken:
        result = spawn.run(*_flags_with(tmp_path, certs, port=port))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "already in use" in line and port in line


def test_dev_prints_the_ca_and_reuses_its_certificates(spawn: Spawner, tmp_path: Path) -> None:
    """The banner names the CA; a restart keeps the same certificates and the same store."""
    db = tmp_path / "devdb"
    ca = str(db / "dev-certs" / "ca.pem")
    certificates = []
    for expected in (1, 2):
        server = spawn.raw("--dev", "--port", "0", "--db", str(db)).ready(ca)
        assert server.line() == f"dev CA certificate: {ca}"
        assert server.line().startswith(f"try: python -m {spawn.shell.module} add --url wss://")
        certificates.append((db / "dev-certs" / "chain.pem").read_bytes())
        with server.client() as client:
            assert client.add(b"hello") == expected  # the same CA trusted, the same store
        code, stderr = server.terminate()
        assert code == 0, stderr
    assert certificates[0] == certificates[1]


def test_sigterm_closes_clients_with_1001_and_the_log_stays_quiet(
    spawn: Spawner, certs: Certs, tmp_path: Path
) -> None:
    """With ``JACKRABBIT_LOG=info``: garbage and plain HTTP on the TLS port, and a client that
    does not trust the server's CA, are dropped without a line (they never got a connection
    number); each real client's connection is one line as it comes and one as it goes; on
    SIGTERM a connected consumer is closed with 1001 and the server exits 0. (SIGINT does the
    same: ``conformance/test_lifecycle.py``.)"""
    server = spawn(env={"JACKRABBIT_LOG": "info"})
    _garbage(server.port_number, b"\x00\xffnot TLS at all\r\n\r\n" * 4)
    _garbage(server.port_number, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    stranger = write_certs(tmp_path, trustme.CA())
    with pytest.raises(ssl.SSLCertVerificationError):
        Client.connect(server.url, ca=stranger.ca)
    with server.client() as producer:
        assert producer.add(b"one") == 1
    consumer = Peer.opened(server.port_number, certs.ca)
    consumer.protocol.take(10)
    consumer.flush()
    consumer.wait_for(lambda e: isinstance(e, Subscribed))
    server.proc.send_signal(signal.SIGTERM)
    assert consumer.closed().code == 1001
    consumer.close()
    code, stderr = server.terminate()  # already exiting: the signal is harmless
    assert code == 0, stderr
    lines = stderr.strip().splitlines()
    if spawn.shell.name == "asyncio":  # which event loop it runs on, first
        assert re.match(r".* INFO jackrabbit\.asyncio: event loop: (uvloop|asyncio)$", lines.pop(0))
    pattern = re.compile(r".* INFO jackrabbit\.\w+: connection ([12]) (from .*|closed)$")
    assert all(pattern.match(line) for line in lines), stderr
    assert len(lines) == 4, stderr


@pytest.mark.parametrize("chosen", ["default", "asyncio"])
def test_the_asyncio_shell_runs_on_uvloop_when_installed_and_asked(
    spawn: Spawner, chosen: str
) -> None:
    """The ``uvloop`` extra: the asyncio shell runs on uvloop's loop when it is installed, on
    the standard one with ``JACKRABBIT_LOOP=asyncio``; both serve (the conformance suite runs
    the default, the in-process shell tests the standard loop)."""
    if spawn.shell.name != "asyncio":
        pytest.skip("only the asyncio shell has an event loop to choose")
    env = {"JACKRABBIT_LOG": "info"}
    if chosen == "asyncio":
        env["JACKRABBIT_LOOP"] = "asyncio"
    server = spawn(env=env)
    with server.client() as producer:
        assert producer.add(b"served") == 1
    code, stderr = server.terminate()
    assert code == 0, stderr
    try:
        import uvloop  # noqa: F401
    except ImportError:
        expected = "asyncio"
    else:
        expected = "uvloop" if chosen == "default" else "asyncio"
    assert f"event loop: {expected}" in stderr


def _garbage(port: int, data: bytes) -> None:
    """Send ``data`` instead of a TLS handshake; the server must hang up on us."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(data)
        try:
            while sock.recv(4096):
                pass
        except ConnectionResetError:
            pass
