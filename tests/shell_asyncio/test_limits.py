"""What peers can make the asyncio server hold (issue 9): silent connections, idle TLS
connections, a client that never reads, measured as the server process's RSS and open file
descriptors, with bounds far above what it costs now and far below what it cost before
(about 320 KB per silent connection, 300 KB per idle one, without bound for a non-reading
consumer); and who gets in when connections crowd the door, on an in-process server."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import msgpack
import pytest

from jackrabbit_asyncio.acceptor import MAX_HANDSHAKES, SPARE

from .conftest import HOST, WAIT, Certs, Spawn, eventually, run, running

pytestmark = pytest.mark.timeout(120)

MB = 1024 * 1024


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _context(certs: Certs) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certs.ca)


def _healthz(port: int, certs: Certs) -> int:
    """``GET /healthz``'s status; the connection is queued behind every earlier one."""
    raw = socket.create_connection((HOST, port), timeout=WAIT)
    with _context(certs).wrap_socket(raw, server_hostname=HOST) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        return int(sock.recv(4096).split(b" ", 2)[1])


def _upgraded(port: int, certs: Certs, queue: str = "limits") -> ssl.SSLSocket:
    """A TLS socket past the WebSocket upgrade to ``queue``."""
    raw = socket.create_connection((HOST, port), timeout=WAIT)
    sock = _context(certs).wrap_socket(raw, server_hostname=HOST)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /queues/{queue} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def _frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (mask of zeros: the payload goes as is)."""
    size = len(payload)
    length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
    return bytes([0x80 | opcode]) + length + b"\0\0\0\0" + payload


@contextmanager
def _silent(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` TCP connections that never send a byte."""
    with ExitStack() as stack:
        opened = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.setblocking(False)
            sock.connect_ex((HOST, port))
            opened.append(sock)
        yield opened


def _server_flags(certs: Certs, db: Path) -> list[str]:
    return [
        "--host", HOST, "--port", "0", "--db", str(db), "--fsync", "never",
        "--chain-cert", certs.chain, "--private-key", certs.key,
    ]  # fmt: skip


def test_silent_connections_hold_next_to_nothing(
    spawn: Spawn, certs: Certs, tmp_path: Path
) -> None:
    """Two waves of 1,000 TCP connections that never send: each wave grows the server's RSS
    by less than 25 MB (it was 320 MB), the server keeps at most ``MAX_HANDSHAKES`` of them
    open, and once they go every descriptor is back."""
    server = spawn(*_server_flags(certs, tmp_path / "db"))
    port, pid = server.port(), server.proc.pid
    assert _healthz(port, certs) == 200  # warm: TLS, HTTP and the core loaded
    base_rss, base_fds = _rss(pid), _fds(pid)
    for _ in range(2):
        with _silent(port, 1000):
            assert _healthz(port, certs) == 200  # accepted after all of them
            assert _rss(pid) - base_rss < 25 * MB
            assert _fds(pid) - base_fds <= MAX_HANDSHAKES
        _wait_for(lambda: _fds(pid) <= base_fds, "descriptors of closed connections kept")


def test_idle_tls_connections_cost_tens_of_kilobytes(
    spawn: Spawn, certs: Certs, tmp_path: Path
) -> None:
    """500 upgraded, idle connections cost the server less than 60 KB each (about 300 KB
    before); all of them are released when they close."""
    server = spawn(*_server_flags(certs, tmp_path / "db"))
    port, pid = server.port(), server.proc.pid
    _upgraded(port, certs).close()
    base_rss, base_fds = _rss(pid), _fds(pid)
    with ExitStack() as stack:
        for _ in range(500):
            stack.enter_context(_upgraded(port, certs))
        assert _healthz(port, certs) == 200
        per_connection = (_rss(pid) - base_rss) / 500
        assert per_connection < 60 * 1024, f"{per_connection / 1024:.0f} KB per connection"
    _wait_for(lambda: _fds(pid) <= base_fds, "descriptors of closed connections kept")


def test_a_consumer_that_never_reads_holds_the_server_to_a_bounded_size(
    spawn: Spawn, certs: Certs, tmp_path: Path
) -> None:
    """A consumer with a backlog waiting sends pings and never reads: the server stops
    reading it once its buffer is full (the consumer's sends stall) and its RSS grows by less
    than 40 MB meanwhile (it grew without bound before)."""
    server = spawn(*_server_flags(certs, tmp_path / "db"))
    port, pid = server.port(), server.proc.pid
    producer = _upgraded(port, certs)
    for n in range(500):
        producer.sendall(_frame(2, msgpack.packb({"command": "add", "data": b"%d" % n * 500})))
    producer.close()
    base_rss = _rss(pid)
    with _upgraded(port, certs) as consumer:
        consumer.sendall(_frame(2, msgpack.packb({"command": "take"})))
        pings = _frame(9, b"p" * 125) * 500
        consumer.settimeout(2.0)
        sent, deadline = 0, time.monotonic() + 60
        with pytest.raises(TimeoutError):  # the server stopped reading: sends stall
            while time.monotonic() < deadline and sent < 256 * MB:
                consumer.sendall(pings)
                sent += len(pings)
        assert _rss(pid) - base_rss < 40 * MB
    assert _healthz(port, certs) == 200


# -- who gets in (in-process) -------------------------------------------------------------------


def test_silent_connections_make_room_for_a_talking_one(certs: Certs, tmp_path: Path) -> None:
    """With ``--max-connections 2`` (so ``2 + SPARE`` connections held at most) and 200 silent
    connections at the door, the server holds no more than that, and a real client still
    connects and works: a newcomer displaces the oldest silent handshake."""

    async def scenario() -> None:
        async with running(certs, tmp_path / "db", max_connections=2) as server:
            gate = server.server._acceptor
            assert gate is not None
            with _silent(server.server.port, 200):
                await eventually(lambda: len(gate.links) == 2 + SPARE)
                client = await asyncio.wait_for(server.client("through"), WAIT)
                assert await client.add(b"in") == 1
                assert len(gate.links) <= 2 + SPARE
                await client.close()

    run(scenario())


def test_handshakes_that_do_not_finish_are_dropped(certs: Certs, tmp_path: Path) -> None:
    """A connection silent, or stuck halfway through TLS, is closed after the TLS timeout
    (``TLS_TIMEOUT``, or the handshake timeout when that is shorter)."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with running(certs, tmp_path / "db", handshake_timeout=0.3) as server:
            port = server.server.port
            silent = socket.create_connection((HOST, port))
            half = socket.create_connection((HOST, port))
            half.sendall(b"\x16\x03\x01\x00\xff\x01")  # the start of a ClientHello
            for sock in (silent, half):
                sock.setblocking(False)
                with sock:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 100), WAIT)
                    assert data == b""  # closed by the server
            assert not server.server._acceptor.links  # type: ignore[union-attr]

    run(scenario())
