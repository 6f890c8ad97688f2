"""What peers can make a server hold (protocol §9): silent sockets, idle connections, peers
that never read, measured as the server process's memory, descriptors and threads. Each
server runs in a process of its own, so what is measured is its alone; the bounds are
generous (several times what is measured) and were each well exceeded before the shells took
their present shape (a thread or 320 KB per silent socket, 300 KB per idle connection,
memory without bound for a peer that never reads)."""

from __future__ import annotations

import fcntl
import resource
import socket
import termios
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import msgpack
import pytest

from jackrabbit_host.limits import MAX_HANDSHAKES, SPARE_SLOTS

from ..support import HOST, WAIT
from .conftest import Spawned, Spawner, eventually
from .wire import Peer, abort, frame

pytestmark = pytest.mark.timeout(120)


def need_descriptors(count: int) -> None:
    """Raise this process's open-file limit to ``count`` if it is lower (skip if we cannot)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= count:
        return
    if hard != resource.RLIM_INFINITY and hard < count:
        pytest.skip(f"needs {count} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))


def warm_up(server: Spawned) -> int:
    """Serve one client (first-use allocations are not what is measured); return the
    server's thread count once that client is gone: its thread, if any, and its socket (the
    server may close it a moment after the client has left)."""
    sockets = server.sockets()
    with server.client() as client:
        client.add(b"warm up")
        with_client = server.threads()
    per_connection = server.shell.threads_per_connection
    assert eventually(lambda: server.threads() <= with_client - per_connection)
    assert eventually(lambda: server.sockets() <= sockets)
    return server.threads()


def _silent(stack: ExitStack, port: int, count: int) -> None:
    """``count`` TCP connections that never send a byte, reset when ``stack`` closes."""
    for _ in range(count):
        sock = socket.create_connection((HOST, port), timeout=WAIT)
        stack.callback(abort, sock)


# -- before TLS -----------------------------------------------------------------------------------


def test_silent_sockets_hold_no_thread_and_little_memory(spawn: Spawner) -> None:
    """1,000 TCP connections that never start TLS: no thread each, at most ``MAX_HANDSHAKES``
    of them held open, a few MB in all, a client accepted after them all is served, and the
    memory and descriptors are back once they go."""
    server = spawn()
    base_threads = warm_up(server)
    base_rss, base_fds = server.rss_mb(), server.fds()
    need_descriptors(1200)
    with ExitStack() as stack:
        _silent(stack, server.port_number, 1000)
        with server.client() as client:
            assert client.add(b"through") == 2
            threads, rss, fds = server.threads(), server.rss_mb(), server.fds()
    assert threads <= base_threads + server.shell.threads_per_connection
    assert rss - base_rss < 16, f"{rss - base_rss:.1f} MB for 1,000 silent sockets"
    assert fds - base_fds <= MAX_HANDSHAKES + 1  # and the client's
    assert eventually(lambda: server.fds() <= base_fds)
    assert eventually(lambda: server.rss_mb() - base_rss < 8)


def test_a_crowd_at_the_door_holds_no_more_than_the_slots(spawn: Spawner) -> None:
    """With ``--max-connections 2`` and 200 silent connections at the door, the server holds
    at most ``2 + SPARE_SLOTS`` connections, and a real client still gets in and works: a
    newcomer displaces the oldest silent handshake."""
    server = spawn("--max-connections", "2")
    warm_up(server)
    base_fds = server.fds()
    with ExitStack() as stack:
        _silent(stack, server.port_number, 200)
        assert eventually(lambda: server.fds() - base_fds >= 1 + SPARE_SLOTS)
        with server.client("through") as client:
            assert client.add(b"in") == 1
            assert server.fds() - base_fds <= 2 + SPARE_SLOTS


def test_idle_connections_cost_tens_of_kb_each(spawn: Spawner) -> None:
    """300 upgraded, idle connections: no thread each but the threads shell's reader, well
    under 70 KB each, and all of it released when they close."""
    server = spawn()
    count = 300
    base_threads = warm_up(server)
    base_rss, base_fds = server.rss_mb(), server.fds()
    with ExitStack() as stack:
        for i in range(count):
            peer = Peer.opened(server.port_number, server.ca, f"/queues/idle{i % 10}")
            stack.callback(peer.close)
        threads, rss = server.threads(), server.rss_mb()
    assert threads <= base_threads + count * server.shell.threads_per_connection
    per_connection_kb = (rss - base_rss) * 1024 / count
    assert per_connection_kb < 70, f"{per_connection_kb:.0f} KB per idle connection"
    assert eventually(lambda: server.fds() <= base_fds)


# -- peers that never read ------------------------------------------------------------------------

_ADD = msgpack.packb({"command": "add", "req": 1, "data": b"x" * 100})
_BAD = msgpack.packb({"command": "no such request", "req": 1, "pad": "x" * 100})
_FRAMES = {
    "pings": frame(0x9, b"p" * 125),
    "bad requests": frame(0x2, _BAD),
    "adds": frame(0x2, _ADD),
    "pings from a consumer": frame(0x9, b"p" * 125),
}
#: The smallest budget: its shares stop a peer that never reads soonest.
BUDGET = "8MiB"


def _flood(peer: Peer, one: bytes) -> tuple[bool, int]:
    """Send ``one`` over and over, never reading; whether the server stopped reading (a send
    waits a second), and how many bytes it took."""
    burst = one * (64 * 1024 // len(one))
    peer.sock.settimeout(1.0)
    sent = 0
    deadline = time.monotonic() + 4 * WAIT
    while sent < 256 * 1024 * 1024 and time.monotonic() < deadline:
        try:
            peer.sock.sendall(burst)
        except TimeoutError:
            return True, sent
        sent += len(burst)
    return False, sent


def test_peers_that_never_read_are_no_longer_read(spawn: Spawner) -> None:
    """Peers that send and never read what they are answered (pongs, errors, confirmations;
    deliveries too, for a consumer with a backlog waiting), all at once: each is no longer
    read once its answers pile up (protocol §7.1), its sends block, the server's memory grows
    by a few budgets at most, and other clients are served."""
    server = spawn("--memory-budget", BUDGET)
    with server.client() as producer:
        for n in range(200):
            producer.add(b"%d" % n * 500)
    peers = {kind: Peer.opened(server.port_number, server.ca, rcvbuf=4096) for kind in _FRAMES}
    consumer = peers["pings from a consumer"]
    consumer.protocol.take(1000)
    consumer.flush()
    base_rss = server.rss_mb()
    with ThreadPoolExecutor(len(peers)) as pool:
        floods = pool.map(_flood, peers.values(), _FRAMES.values())
        outcomes = dict(zip(peers, floods, strict=True))
    growth = server.rss_mb() - base_rss
    for kind, (stopped, sent) in outcomes.items():
        assert stopped, f"the server read {sent / 1e6:.0f} MB of {kind} and never stopped"
    assert growth < 32, f"+{growth:.0f} MB for {len(peers)} peers that do not read"
    with server.client() as other:
        assert other.add(b"still serving") >= 1
    for peer in peers.values():
        peer.abort()


# -- original dialect: acked once written (protocol §8.3) -----------------------------------------


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
    spawn: Spawner,
) -> None:
    """Deliveries to an original consumer count as acked once written to its socket, not
    when queued for it: one that stops reading and dies has everything still in the server's
    buffer redelivered to the next consumer; what it may lose is only what the kernels held."""
    server = spawn()
    size, count = 16 * 1024, 400  # 6.5 MB: more than the socket buffers take
    with server.client() as producer:
        for i in range(count):
            producer.add(i.to_bytes(4, "big") * (size // 4))
    dying = Peer.opened(server.port_number, server.ca, rcvbuf=4096)
    dying.sock.sendall(frame(0x2, msgpack.packb({"command": {1: None}, "data": b""})))
    # Wait until the server has written all the socket takes: two looks alike, 0.2 s apart.
    queued, deadline = -1, time.monotonic() + WAIT
    while (latest := _kernel_queues(dying.sock, server.port_number)) != queued:
        assert time.monotonic() < deadline, "the server never stopped writing"
        queued = latest
        time.sleep(0.2)
    dying.abort()
    with server.client() as consumer:
        first = next(consumer.take(prefetch=10))
    lost = first.seq - 1
    assert first.redelivered
    assert lost * size <= queued + 64 * 1024, (lost, queued)
    assert count - lost > 64  # and there was more in the server's buffer than in the kernels
