"""Holding up under abuse (protocol §1.2, §7.1, §9): what one peer, or a crowd of them, can do
to everyone else.

- Connections over ``--max-connections`` are answered HTTP 503 at once, also while silent
  connections (TCP open, not a byte sent) hammer the server.
- Silent connections, however many, do not keep a real client out.
- A client that sends and never reads is stopped being read (its sends stall, or it is
  dropped) after a bounded amount, whatever it sends, and the others carry on meanwhile.
- One connection flooding the server does not slow the others' requests to seconds.
- SIGTERM with consumers busy reading a backlog ends as soon as their close handshakes allow.

The crowds (silent connections, a flood, busy consumers) run in subprocesses of their own, so
that their work does not compete for this process's interpreter with the client being timed:
``python -m conformance.test_connection_limits PEER ...`` runs one (see the bottom).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import resource
import select
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import msgpack
import pytest

from .client import OP_BINARY, OP_PING, TIMEOUT, Client, RawWebSocket, encode_frame, http, pack
from .conftest import Spawner
from .harness import REPO_ROOT, Target

#: A real client must get through within this many seconds while the crowd runs.
GET_THROUGH = 10.0
#: Seconds a peer subprocess may take to report that it is running.
PEER_START = 20.0

# -- peers in subprocesses ------------------------------------------------------------------------


class Peer:
    """``python -m conformance.test_connection_limits KIND ARGS``: prints ``ready`` once it
    runs; stopped (killed) when the ``with`` block ends, or ends by itself after its time."""

    def __init__(self, kind: str, target: Target, *args: object) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "conformance.test_connection_limits", kind,
             target.host, str(target.port), str(target.ca), *map(str, args)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip

    def __enter__(self) -> Peer:
        ready = _read_line(self.process, time.monotonic() + PEER_START)
        if ready != "ready":
            self.process.kill()
            _, err = self.process.communicate(timeout=TIMEOUT)
            raise AssertionError(f"peer did not start: {ready!r} {err[-2000:]}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=TIMEOUT)


def _read_line(process: subprocess.Popen[str], deadline: float) -> str:
    """The next stdout line of ``process`` ("" if none comes by ``deadline``); a peer writes
    each line at once, so a readable pipe holds a whole one."""
    stdout = process.stdout
    assert stdout is not None
    readable, _, _ = select.select([stdout], [], [], max(0.0, deadline - time.monotonic()))
    return stdout.readline().strip() if readable else ""


def _raise_fd_limit() -> None:
    """Let this process (and the servers it starts) hold a few thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@pytest.fixture
def roomy(spawn: Spawner) -> Spawner:
    """``spawn`` with room for many file descriptors (the limit is inherited)."""
    _raise_fd_limit()
    return spawn


# -- over the limit -------------------------------------------------------------------------------


def _assert_503(target: Target, path: str = "/healthz", timeout: float = GET_THROUGH) -> float:
    """A request answered 503; returns how long the answer took."""
    started = time.monotonic()
    response = http(target, path, timeout=timeout)
    assert response.status == 503, response
    return time.monotonic() - started


def test_over_the_limit_is_answered_503_at_once(
    spawn: Spawner, connect: Callable[..., Client], queue: str
) -> None:
    """With ``--max-connections 2`` held, twenty more connections in a row each get 503 (for
    a plain request and for an upgrade) without waiting for any timeout; the two held ones
    still work."""
    server = spawn("--max-connections", "2")
    held = [connect(server, queue), connect(server, queue)]
    started = time.monotonic()
    for _ in range(10):
        _assert_503(server)
        with pytest.raises(ConnectionError, match=r"'HTTP/1\.[01] 503"):
            RawWebSocket.connect(server, f"/queues/{queue}")
    assert time.monotonic() - started < 2 * GET_THROUGH
    assert [client.add(b"still served")["seq"] for client in held] == [1, 2]


def test_503_at_once_while_silent_connections_hammer(
    roomy: Spawner, connect: Callable[..., Client], queue: str
) -> None:
    """The limit is full and 1,000 silent TCP connections (more arriving all the time) press
    on it: a new client is still answered 503 promptly, not left hanging."""
    server = roomy("--max-connections", "2")
    held = [connect(server, queue), connect(server, queue)]
    with Peer("silent", server, 1000, 60):
        for _ in range(3):
            _assert_503(server)
    assert held[0].add(b"still served")["seq"] == 1


def test_a_client_gets_through_while_silent_connections_hammer(
    roomy: Spawner, connect: Callable[..., Client], queue: str
) -> None:
    """2,000 silent TCP connections, against ``--max-connections 100``, with more arriving all
    the time: a real client still connects, adds and reads within ``GET_THROUGH`` seconds,
    again and again, and ``/healthz`` answers."""
    server = roomy("--max-connections", "100")
    with Peer("silent", server, 2000, 60):
        for n in range(1, 4):
            started = time.monotonic()
            with Client.open(server, queue, timeout=GET_THROUGH) as client:
                assert client.add(b"got through %d" % n)["seq"] == n
            assert time.monotonic() - started < 2 * GET_THROUGH
        assert http(server, "/healthz", timeout=GET_THROUGH).status == 200
        consumer = connect(server, queue, timeout=GET_THROUGH)
        consumer.take()
        assert [m["seq"] for m in consumer.messages(3)] == [1, 2, 3]


# -- a client that never reads --------------------------------------------------------------------

#: What a non-reading client sends, 64 KiB at a time.
NEVER_READS = {
    "pings": encode_frame(OP_PING, b"p" * 125),
    "bad-requests": encode_frame(OP_BINARY, b"\xc1"),
    "adds": encode_frame(OP_BINARY, pack({"command": "add", "data": b"x" * 100})),
}
#: The most a non-reading client may get the server (and the kernel buffers between) to take.
MOST_TAKEN = 128 * 1024 * 1024
#: A send blocked this long means the server stopped reading.
STALLED = 2.0


@pytest.mark.parametrize(
    ("kind", "consumer"),
    [("pings", False), ("bad-requests", False), ("adds", False), ("pings", True)],
    ids=["pings", "bad-requests", "adds", "consumer-pings"],
)
def test_a_client_that_never_reads_is_stopped_and_others_carry_on(
    spawn: Spawner, connect: Callable[..., Client], queue: str, kind: str, consumer: bool
) -> None:
    """A client sends pings, bad requests or adds (or, as a consumer with a backlog waiting,
    pings) as fast as it can and never reads: the server stops reading it (its sends stall)
    or drops it before it has taken ``MOST_TAKEN`` bytes, and meanwhile another client adds
    and takes as usual."""
    server = spawn("--fsync", "never")
    if consumer:
        producer = connect(server, queue)
        for n in range(200):
            producer.send({"command": "add", "data": b"%d" % n * 1000})
        producer.until("added", seq=200)
    ws = RawWebSocket.connect(server, f"/queues/{queue}")
    if consumer:
        ws.send({"command": "take"})
    chunk = NEVER_READS[kind] * (64 * 1024 // len(NEVER_READS[kind]))
    ws.sock.settimeout(STALLED)
    sent = 0
    outcome = "still reading"
    deadline = time.monotonic() + 60
    try:
        while sent < MOST_TAKEN and time.monotonic() < deadline:
            try:
                ws.sock.sendall(chunk)
            except TimeoutError:
                outcome = "stalled"
                break
            except OSError:
                outcome = "dropped"
                break
            sent += len(chunk)
        assert outcome != "still reading", f"{sent} bytes taken and still reading"
        other = connect(server, queue + "-other")
        assert other.add(b"meanwhile")["seq"] == 1
        other.take()
        assert other.messages(1)[0]["data"] == b"meanwhile"
    finally:
        ws.abort()
    assert http(server, "/healthz").status == 200


# -- one connection flooding ----------------------------------------------------------------------

#: The median time ``/healthz`` may take while one connection floods the server.
FLOODED_MEDIAN = 1.0


@pytest.mark.parametrize("kind", ["pings", "bad-requests"])
def test_one_flooding_connection_does_not_stall_the_others(spawn: Spawner, kind: str) -> None:
    """One connection sends pings (or bad requests) as fast as the server takes them and
    reads every answer: ``/healthz`` on other connections still answers in well under a
    second (median of ten)."""
    server = spawn("--fsync", "never")
    with Peer("flood", server, kind, 60):
        times = []
        for _ in range(10):
            started = time.monotonic()
            assert http(server, "/healthz", timeout=GET_THROUGH).status == 200
            times.append(time.monotonic() - started)
    assert statistics.median(times) < FLOODED_MEDIAN, times


# -- shutting down with busy consumers ------------------------------------------------------------

#: How long SIGTERM may take with consumers reading a backlog (each takes far less than a
#: second to reach the close frame).
QUICK_SHUTDOWN = 3.0


def test_sigterm_with_busy_consumers_ends_as_soon_as_they_close(
    spawn: Spawner, connect: Callable[..., Client], queue: str
) -> None:
    """Four consumers (two v1 with prefetch 100, two original), each of its own queue, read a
    backlog slowly; on SIGTERM the server closes them with 1001 and exits 0 in well under its
    5-second bound: it waits for their close handshakes, not for their TCP or TLS close."""
    server = spawn("--fsync", "never")
    for n in range(4):
        producer = connect(server, f"{queue}-{n}")
        for m in range(500):
            producer.send({"command": "add", "data": b"%04d" % m * 250})
        producer.until("added", seq=500)
        producer.close()
    with Peer("consumers", server, queue, 4, 60) as peer:
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        took = time.monotonic() - started
        assert took < QUICK_SHUTDOWN, took
        # websockets' default close_timeout (10 s) bounds how long a consumer that still had
        # messages queued takes to give up waiting for the TCP close it has already had.
        assert peer.process.wait(timeout=20) == 0, peer.process.communicate()[1]


# -- the peers, run as ``python -m conformance.test_connection_limits KIND HOST PORT CA ...`` -----


def _silent(host: str, port: int, hold: int, seconds: float) -> None:
    """Open ``hold`` TCP connections that never send, say ``ready``, then keep opening new
    ones (about 500 a second, the oldest closed) for ``seconds``."""
    opened: collections.deque[socket.socket] = collections.deque()

    def open_one() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex((host, port))
        opened.append(sock)
        if len(opened) > hold:
            opened.popleft().close()

    for _ in range(hold):
        open_one()
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(50):
            open_one()
        time.sleep(0.1)


async def _flood(host: str, port: int, ca: str, kind: str, seconds: float) -> None:
    """Upgrade, then send pings or bad requests as fast as the server takes them, reading
    everything it answers, for ``seconds``."""
    context = ssl.create_default_context(cafile=ca)
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    writer.write(
        b"GET /queues/flood HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 101 " in head.split(b"\r\n", 1)[0], head
    frame = encode_frame(OP_PING, b"") if kind == "pings" else encode_frame(OP_BINARY, b"\xc1")
    batch = frame * (16 * 1024 // len(frame))

    async def drain() -> None:
        while await reader.read(65536):
            pass

    draining = asyncio.ensure_future(drain())
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not draining.done():
        writer.write(batch)
        await writer.drain()
    draining.cancel()
    writer.close()


async def _consumers(host: str, port: int, ca: str, queue: str, count: int, seconds: float) -> None:
    """``count`` consumers, of the queues ``QUEUE-0``, ``QUEUE-1``... (even ones v1 with
    prefetch 100 acking each message, odd ones original) reading about one message a
    millisecond until the server closes them; exits 1 unless every one was closed with 1001."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    context = ssl.create_default_context(cafile=ca)
    started = asyncio.Event()

    async def consume(n: int) -> int | None:
        url = f"wss://{host}:{port}/queues/{queue}-{n}"
        async with connect(url, ssl=context, max_size=None, compression=None) as ws:
            original = n % 2 == 1
            take = {"command": {1: None}} if original else {"command": "take", "prefetch": 100}
            await ws.send(msgpack.packb(take))
            async for raw in ws:
                started.set()
                event = msgpack.unpackb(raw, strict_map_key=False)
                if not original and event.get("event") == "message":
                    with contextlib.suppress(ConnectionClosed):  # read on up to the close
                        await ws.send(msgpack.packb({"command": "ack", "seq": event["seq"]}))
                await asyncio.sleep(0.001)
            return ws.close_code

    tasks = [asyncio.ensure_future(consume(n)) for n in range(count)]
    await asyncio.wait_for(started.wait(), seconds)
    await asyncio.sleep(0.5)  # every consumer has deliveries in flight
    print("ready", flush=True)
    codes = await asyncio.wait_for(asyncio.gather(*tasks), seconds)
    if codes != [1001] * count:
        print(f"close codes {codes}", file=sys.stderr)
        sys.exit(1)


def _main(argv: list[str]) -> None:
    kind, host, port, ca, *rest = argv
    if kind == "silent":
        _silent(host, int(port), int(rest[0]), float(rest[1]))
    elif kind == "flood":
        asyncio.run(_flood(host, int(port), ca, rest[0], float(rest[1])))
    else:
        asyncio.run(_consumers(host, int(port), ca, rest[0], int(rest[1]), float(rest[2])))


if __name__ == "__main__":
    _main(sys.argv[1:])
