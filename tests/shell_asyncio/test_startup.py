"""Start-up and shutdown of ``python -m jackrabbit_asyncio``, as a user sees them: exit
statuses, the one line on stderr, the ready line, ``--dev``, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import trustme

from jackrabbit_asyncio import Client

from .conftest import HOST, Certs, Spawn, run, run_cli, write_certs

pytestmark = pytest.mark.timeout(60)


def _server_flags(certs: Certs, db: Path, *extra: str) -> list[str]:
    return [
        "--host", HOST, "--port", "0", "--db", str(db),
        "--chain-cert", certs.chain, "--private-key", certs.key, *extra,
    ]  # fmt: skip


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    stderr = result.stderr
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_certificate(tmp_path: Path) -> None:
    result = run_cli(
        "--port", "0", "--db", str(tmp_path / "db"),
        "--chain-cert", str(tmp_path / "nope.pem"), "--private-key", str(tmp_path / "nope.key"),
        cwd=tmp_path,
    )  # fmt: skip
    _assert_one_line_error(result, "certificate file not found", "nope.pem")


def test_key_not_matching_the_certificate(tmp_path: Path, certs: Certs) -> None:
    other = write_certs(tmp_path, trustme.CA())
    result = run_cli(
        "--port", "0", "--db", str(tmp_path / "db"),
        "--chain-cert", certs.chain, "--private-key", other.key,
        cwd=tmp_path,
    )  # fmt: skip
    _assert_one_line_error(result, "does not match")


def test_port_in_use(tmp_path: Path, certs: Certs) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        flags = _server_flags(certs, tmp_path / "db")
        flags[flags.index("--port") + 1] = port
        result = run_cli(*flags, cwd=tmp_path)
    _assert_one_line_error(result, "already in use", port)


def test_unwritable_db(tmp_path: Path, certs: Certs) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_cli(*_server_flags(certs, blocker / "db"), cwd=tmp_path)
    _assert_one_line_error(result, "cannot open the store", "a-file")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = run_cli(*_server_flags(certs, locked / "db"), cwd=tmp_path)
        _assert_one_line_error(result, "cannot open the store")


def test_bad_flag_is_one_line(tmp_path: Path) -> None:
    result = run_cli("--port", "99999", cwd=tmp_path)
    _assert_one_line_error(result, "port")


def test_dev_prints_the_ca_and_reuses_its_certificates(tmp_path: Path, spawn: Spawn) -> None:
    db = tmp_path / "db"
    first = spawn("--dev", "--port", "0", "--db", str(db))
    port = first.port()
    banner = first.line()
    ca = str(db / "dev-certs" / "ca.pem")
    assert banner == f"dev CA certificate: {ca}"
    assert first.line().startswith("try: python -m jackrabbit_asyncio add --url wss://")

    async def add_one() -> int:
        async with await Client.connect(f"wss://127.0.0.1:{port}", ca=ca) as client:
            return await client.add(b"hello")

    assert run(add_one()) == 1
    code, stderr = first.terminate()
    assert code == 0, stderr
    certificate = Path(db / "dev-certs" / "chain.pem").read_bytes()

    second = spawn("--dev", "--port", "0", "--db", str(db))
    second_port = second.port()
    assert second.line() == f"dev CA certificate: {ca}"
    assert Path(db / "dev-certs" / "chain.pem").read_bytes() == certificate
    assert run(_add_at(second_port, ca)) == 2  # same CA trusted, same store
    code, stderr = second.terminate()
    assert code == 0, stderr


async def _add_at(port: int, ca: str) -> int:
    async with await Client.connect(f"wss://127.0.0.1:{port}", ca=ca) as client:
        return await client.add(b"again")


def test_sigterm_closes_clients_with_1001_and_exits_0(
    tmp_path: Path, certs: Certs, spawn: Spawn
) -> None:
    """Also: garbage and plain HTTP on the TLS port only drop those connections, quietly."""
    server = spawn(*_server_flags(certs, tmp_path / "db"), env={"JACKRABBIT_LOG": "info"})
    port = server.port()
    _garbage(port, b"\x00\xffnot TLS at all\r\n\r\n" * 4)
    _garbage(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    url = f"wss://{HOST}:{port}"

    async def scenario() -> tuple[list[int], int | None, int]:
        producer = await Client.connect(url, ca=certs.ca)
        seqs = [await producer.add(b"%d" % i) for i in range(3)]
        await producer.close()
        consumer = await Client.connect(url, ca=certs.ca)
        got = []
        async for message in consumer.take():
            got.append(message.seq)
            await message.ack()
            if len(got) == len(seqs):
                server.proc.send_signal(signal.SIGTERM)  # SIGTERM while a consumer is connected
        await consumer.close()
        assert got == seqs
        return seqs, consumer.close_code, len(got)

    _, close_code, _ = run(scenario())
    assert close_code == 1001
    code, stderr = server.terminate()  # already exiting: the signal is harmless
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert " ERROR " not in stderr and " WARNING " not in stderr, stderr


def _garbage(port: int, data: bytes) -> None:
    """Send ``data`` instead of a TLS handshake; the server must hang up on us."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(data)
        try:
            while sock.recv(4096):
                pass
        except ConnectionResetError:
            pass


def test_tls_client_with_wrong_ca_is_refused_quietly(
    tmp_path: Path, certs: Certs, spawn: Spawn
) -> None:
    server = spawn(*_server_flags(certs, tmp_path / "db"))
    port = server.port()
    stranger = write_certs(tmp_path, trustme.CA())

    async def connect() -> None:
        await Client.connect(f"wss://{HOST}:{port}", ca=stranger.ca)

    with pytest.raises(ssl.SSLCertVerificationError):
        run(connect())
    code, stderr = server.terminate()
    assert code == 0 and "Traceback" not in stderr, stderr
