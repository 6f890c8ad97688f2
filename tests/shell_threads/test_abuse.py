"""What a peer can make the threads shell hold: silent sockets, idle connections, peers that
never read. Each server runs in a process of its own, so its memory and threads are measured
alone; the bounds are generous (several times what is measured) and were each well exceeded
before the front door, the one writer and the polling readers came in."""

from __future__ import annotations

import asyncio
import fcntl
import resource
import select
import socket
import ssl
import struct
import subprocess
import sys
import termios
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
import websockets

from jackrabbit_core.client import Opened, Subscribed

from .conftest import HOST, WAIT, Spawned
from .wire import Peer

Spawn = Callable[..., Spawned]


def eventually(check: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Whether ``check()`` comes true within ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def need_descriptors(count: int) -> None:
    """Raise this process's open-file limit to ``count`` if it is lower (skip if we cannot)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= count:
        return
    if hard != resource.RLIM_INFINITY and hard < count:
        pytest.skip(f"needs {count} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))


def frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 §5.2), for the peers that build their own."""
    mask = b"\x5a\xa5\x0f\xf0"
    size = len(payload)
    length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack("!H", size)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode]) + length + mask + masked


def opened(server: Spawned, *, rcvbuf: int | None = None, path: str = "/") -> Peer:
    peer = Peer(server.port, server.ca, path, rcvbuf=rcvbuf)
    peer.wait_for(lambda e: isinstance(e, Opened))
    return peer


def warm_up(server: Spawned) -> int:
    """Serve one client (first-use allocations are not what is measured); return the
    server's thread count once that client's reader has ended."""
    with server.client() as client:
        client.add(b"warm up")
        with_client = server.process.threads()
    assert eventually(lambda: server.process.threads() < with_client)
    return server.process.threads()


def abort(sock: socket.socket) -> None:
    """Close with a reset: no TIME_WAIT left behind on our side."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- before TLS ------------------------------------------------------------------------------


def test_silent_sockets_hold_no_thread_and_little_memory(spawn: Spawn) -> None:
    """1,000 TCP connections that never start TLS: no thread each, a few MB in all, and the
    memory is back once they go. (Before: a thread each, +63 MB, all of it kept.)"""
    server = spawn()
    process = server.process
    base_threads = warm_up(server)
    base_rss = process.rss_mb()
    need_descriptors(1200)
    silent = [socket.create_connection((HOST, server.port), timeout=WAIT) for _ in range(1000)]
    try:
        # This client is accepted after the 1,000: they are all in by the time it is served.
        with server.client() as client:
            assert client.add(b"through") == 2
            threads, rss = process.threads(), process.rss_mb()
    finally:
        for sock in silent:
            abort(sock)
    assert threads <= base_threads + 1  # the client's reader
    assert rss - base_rss < 16, f"{rss - base_rss:.1f} MB for 1,000 silent sockets"
    assert eventually(lambda: process.rss_mb() - base_rss < 8)


class Hammer:
    """Opens silent TCP connections as fast as it can, keeping the last ``size`` open, until
    stopped (at most ``MAX_OPENS`` connections and ``4 * WAIT`` seconds). It runs in a process
    of its own, as an attacker would: in ours it would take the GIL from the clients it is
    meant to crowd out, and then measure our threads rather than the server."""

    MAX_OPENS = 1_000_000
    SCRIPT = textwrap.dedent(
        """
        import collections, socket, sys, time
        host = sys.argv[1]
        port, size, max_opens, seconds = map(int, sys.argv[2:6])
        held, opened, deadline = collections.deque(), 0, time.monotonic() + seconds
        while opened < max_opens and time.monotonic() < deadline:
            if len(held) >= size:
                held.popleft().close()
            try:
                held.append(socket.create_connection((host, port), timeout=1.0))
            except OSError:
                continue
            opened += 1
            if opened == size:
                print("full", flush=True)
        """
    )

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.process: subprocess.Popen[str] | None = None

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Hammer:
        args = [HOST, self.port, self.size, self.MAX_OPENS, int(4 * WAIT)]
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, *map(str, args)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], WAIT)
        assert ready and self.process.stdout.readline().strip() == "full"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(WAIT)


def test_clients_get_in_while_2000_silent_sockets_hammer(spawn: Spawn) -> None:
    """Silent sockets keep coming, 2,000 open at a time, far over ``--max-connections``:
    clients still get in, and one over the limit still gets its 503. (Before: the silent
    sockets took every slot and a client's connection was reset.)"""
    server = spawn("--max-connections", "4")
    members = [opened(server) for _ in range(3)]
    need_descriptors(2400)
    with Hammer(server.port, 2000) as hammer:
        for i in range(3):
            with server.client() as client:  # the fourth slot, again and again
                client.add(f"in {i}".encode())
        fourth = opened(server)
        fifth = Peer(server.port, server.ca)
        assert fifth.closed().code == 503
        assert hammer.is_alive(), "the hammer stopped before the clients were done"
    for peer in (*members, fourth, fifth):
        peer.close()


# -- idle connections ------------------------------------------------------------------------


def test_idle_connections_cost_one_thread_and_tens_of_kb_each(spawn: Spawn) -> None:
    """300 open, idle WebSocket connections: a reader thread each and no other, and well
    under 70 KB each. (Before: two threads and about 97 KB each.)"""
    server = spawn()
    context = ssl.create_default_context(cafile=server.ca)
    process = server.process
    count = 300

    async def measure() -> tuple[int, float]:
        idle = [
            await websockets.connect(f"{server.url}/queues/idle{i % 10}", ssl=context)
            for i in range(count)
        ]
        during = process.threads(), process.rss_mb()
        for ws in idle:
            await ws.close()
        return during

    base_threads = warm_up(server)
    base_rss = process.rss_mb()
    threads, rss = asyncio.run(measure())
    assert threads <= base_threads + count
    per_connection_kb = (rss - base_rss) * 1024 / count
    assert per_connection_kb < 70, f"{per_connection_kb:.0f} KB per idle connection"


# -- peers that never read -------------------------------------------------------------------

_ADD = msgpack.packb({"command": "add", "req": 1, "data": b"x" * 100})
_BAD = msgpack.packb({"command": "no such request", "req": 1, "pad": "x" * 100})
_FRAMES = {
    "pings": frame(0x9, b"p" * 125),
    "bad requests": frame(0x2, _BAD),
    "adds": frame(0x2, _ADD),
    "pings from a consumer": frame(0x9, b"p" * 125),
}


@pytest.mark.parametrize("kind", list(_FRAMES))
def test_a_peer_that_never_reads_is_no_longer_read(spawn: Spawn, kind: str) -> None:
    """A peer that sends and never reads what it is answered (pongs, errors, confirmations)
    is no longer read once its answers pile up (protocol §7.1), a consumer too: its sends
    block and the server's memory stays bounded, while other clients are served."""
    server = spawn()
    peer = opened(server, rcvbuf=4096)
    if kind.endswith("consumer"):
        peer.protocol.take(10)
        peer.flush()
        peer.wait_for(lambda e: isinstance(e, Subscribed))
    one = _FRAMES[kind]
    burst = one * (64 * 1024 // len(one))
    base_rss = server.process.rss_mb()
    peer.sock.settimeout(1.0)  # a send that waits this long: the server stopped reading
    sent = 0
    stopped = False
    deadline = time.monotonic() + 4 * WAIT
    while sent < 256 * 1024 * 1024 and time.monotonic() < deadline:
        try:
            peer.sock.sendall(burst)
        except TimeoutError:
            stopped = True
            break
        sent += len(burst)
    growth = server.process.rss_mb() - base_rss
    assert stopped, f"the server read {sent / 1e6:.0f} MB of {kind} and never stopped"
    assert growth < 48, f"+{growth:.0f} MB for a peer that does not read"
    with server.client() as other:
        assert other.add(b"still serving") >= 1
    abort(peer.sock)


# -- original dialect: acked once written (protocol §8.3) ------------------------------------


def _kernel_queues(client: socket.socket, server_port: int) -> int:
    """Bytes sent by the server and not yet read by ``client``: in the client's receive queue
    plus in the server's send queue for this connection (from /proc/net/tcp)."""
    unread = int.from_bytes(fcntl.ioctl(client.fileno(), termios.FIONREAD, bytes(4)), "little")
    client_port = client.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and (
            int(remote.split(":")[1], 16) == client_port
        ):
            return unread + int(fields[4].split(":")[0], 16)
    raise AssertionError("the connection is not in /proc/net/tcp")


def test_an_original_consumer_that_dies_loses_nothing_left_in_the_servers_buffer(
    spawn: Spawn,
) -> None:
    """Deliveries to an original consumer count as acked once written to its socket, not
    when queued for it: one that stops reading and dies has everything still in the server's
    buffer redelivered to the next consumer; what it may lose is only what the kernels held."""
    server = spawn()
    size, count = 16 * 1024, 400  # 6.5 MB: more than the socket buffers take
    with server.client() as producer:
        for i in range(count):
            producer.add(i.to_bytes(4, "big") * (size // 4))
    dying = opened(server, rcvbuf=4096)
    dying.sock.sendall(frame(0x2, msgpack.packb({"command": {1: None}, "data": b""})))
    # Wait until the server has written all the socket takes: two looks alike, 0.2 s apart.
    queued, deadline = -1, time.monotonic() + WAIT
    while (latest := _kernel_queues(dying.sock, server.port)) != queued:
        assert time.monotonic() < deadline, "the server never stopped writing"
        queued = latest
        time.sleep(0.2)
    abort(dying.sock)
    with server.client() as consumer:
        first = next(consumer.take(prefetch=10))
    lost = first.seq - 1
    assert first.redelivered
    assert lost * size <= queued + 64 * 1024, (lost, queued)
    assert count - lost > 64  # and there was more in the server's buffer than in the kernels


def test_stopping_with_clients_that_never_answer_the_close(spawn: Spawn) -> None:
    """SIGTERM with peers that never read: they are dropped once they stall, rather than
    waited for to the end of the shutdown timeout (before: 5.1 s every time)."""
    server = spawn()
    with server.client() as producer:
        for _ in range(100):
            producer.add(bytes(16 * 1024))
    idle = opened(server, rcvbuf=4096)
    stuck = opened(server, rcvbuf=4096)  # a consumer behind 1.6 MB of deliveries
    stuck.protocol.take(1000)
    stuck.flush()
    started = time.monotonic()
    code, _ = server.process.terminate()
    elapsed = time.monotonic() - started
    assert code == 0
    assert idle.closed().code == 1001  # told why before it was dropped
    assert elapsed < 3.0, f"the shutdown took {elapsed:.1f} s"
    for peer in (idle, stuck):
        peer.close()

