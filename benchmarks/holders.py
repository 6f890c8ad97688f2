"""Agent roles that hold connections to a jackrabbit server for the memory rows (issue 9's
abuse cases), each bounded in count and in time, on 127.0.0.1 only:

- ``idle``: ``count`` WebSocket connections, upgraded and then idle (the ``websockets``
  client answers the server's pings, so the heartbeat keeps them);
- ``pretls``: ``count`` TCP connections that never start TLS;
- ``deaf``: one upgraded connection that joins its queue's consumers (``take``), then sends
  for ``seconds`` and never reads what the server sends back: pings and bad requests
  (``mix: "pings"``: the server holds nothing for it but answers) or adds (``mix: "adds"``:
  answers, and the messages it stores).

``idle`` and ``pretls`` say ``ready`` once their connections are open (with how many opened
and failed), hold them until the orchestrator says ``close``, and report in their result how
many the server had closed meanwhile. ``deaf`` says ``ready`` once upgraded, waits for
``go``, sends until its time is up or the server closes it, says ``sent`` (how much, how
long its sends were blocked) with the connection still open, and closes it on ``close``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import msgpack

from .agentio import emit, stdin_lines, wait_for_line

OPEN_CONCURRENCY = 32  # connections being opened at once
CONNECT_TIMEOUT = 5.0
DEAF_RCVBUF = 16384


async def _open_all(count: int, seconds: float,
                    one: Callable[[], Awaitable[Any]]) -> tuple[list[Any], list[str]]:
    """Open up to ``count`` connections with ``one()``, ``OPEN_CONCURRENCY`` at a time, for
    at most ``seconds``; return those opened and the distinct errors."""
    opened: list[Any] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    deadline = time.monotonic() + seconds

    async def attempt() -> None:
        async with gate:
            if time.monotonic() > deadline:
                return
            try:
                opened.append(await asyncio.wait_for(one(), CONNECT_TIMEOUT))
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"[:120]
                if reason not in errors and len(errors) < 5:
                    errors.append(reason)

    await asyncio.gather(*(attempt() for _ in range(count)))
    return opened, errors


def _host_port(endpoint: dict[str, Any]) -> tuple[str, int]:
    parts = urlsplit(endpoint["url"])
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def run_idle(spec: dict[str, Any]) -> dict[str, Any]:
    from websockets.protocol import State

    from .drivers.jackrabbit_ws import open_ws

    count = int(spec["count"])
    reader = await stdin_lines()
    conns, errors = await _open_all(
        count, float(spec["open_seconds"]),
        lambda: open_ws(spec["endpoint"], spec["queue"]))
    emit({"type": "ready", "opened": len(conns), "failed": count - len(conns),
          "errors": errors})
    await wait_for_line(reader, "close", float(spec["hold"]))
    dropped = sum(1 for ws in conns if ws.state is not State.OPEN)

    async def close(ws: Any) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)

    await asyncio.gather(*(close(ws) for ws in conns))
    return {"type": "result", "opened": len(conns), "closed_by_server": dropped}


async def run_pretls(spec: dict[str, Any]) -> dict[str, Any]:
    host, port = _host_port(spec["endpoint"])
    count = int(spec["count"])
    reader = await stdin_lines()
    conns, errors = await _open_all(
        count, float(spec["open_seconds"]), lambda: asyncio.open_connection(host, port))
    emit({"type": "ready", "opened": len(conns), "failed": count - len(conns),
          "errors": errors})
    await wait_for_line(reader, "close", float(spec["hold"]))
    dropped = sum(1 for r, w in conns if r.at_eof() or w.transport.is_closing())
    for _, writer in conns:
        writer.close()
    for _, writer in conns:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1)
    return {"type": "result", "opened": len(conns), "closed_by_server": dropped}


def _frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 §5.2) with a payload under 126 bytes."""
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked


def deaf_batch(mix: str) -> bytes:
    """What the non-reader sends again and again: a ping and a bad request (answered with a
    pong and an ``error``), or an add (answered with ``added`` once durable)."""
    pack = msgpack.Packer().pack
    if mix == "adds":
        return _frame(0x2, pack({"command": "add", "data": b"x" * 100}))
    return (_frame(0x9, b"are you there?")
            + _frame(0x2, pack({"command": "no-such-command"})))


def _upgrade(endpoint: dict[str, Any], queue: str) -> ssl.SSLSocket:
    """A TLS connection upgraded to a WebSocket on ``queue`` that has sent ``take``; what the
    server sends after its 101 response is never read. (A consumer connection is the case
    issue 9 found growing: it was never paused for an unwritable transport.)"""
    host, port = _host_port(endpoint)
    ctx = ssl.create_default_context(cafile=endpoint["ca"])
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # a small receive buffer, so the kernel holds little of what the server sends and the
    # server's own handling of an unread connection shows sooner
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, DEAF_RCVBUF)
    raw.settimeout(CONNECT_TIMEOUT)
    raw.connect((host, port))
    sock = ctx.wrap_socket(raw, server_hostname=host)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /queues/{queue} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 16384:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        sock.close()
        raise RuntimeError(f"upgrade refused: {status.decode(errors='replace')}")
    sock.sendall(_frame(0x2, msgpack.packb({"command": "take"})))
    return sock


def _send_deaf(sock: ssl.SSLSocket, batch: bytes, seconds: float,
               limit_bytes: int) -> dict[str, Any]:
    """Send ``batch`` again and again for ``seconds`` (or until ``limit_bytes``), reading
    nothing. A send that blocks 0.2 s (the server stopped reading: backpressure) is retried
    with the same bytes until the time is up."""
    sock.settimeout(0.2)
    sent = 0
    blocked_s = 0.0
    closed_after: float | None = None
    start = time.monotonic()
    deadline = start + seconds
    view = memoryview(batch)
    while time.monotonic() < deadline and sent < limit_bytes:
        t0 = time.monotonic()
        try:
            n = sock.send(view)
        except TimeoutError:
            blocked_s += time.monotonic() - t0
            continue
        except OSError:  # ssl.SSLError included: the server closed it
            closed_after = time.monotonic() - start
            break
        sent += n
        view = view[n:] or memoryview(batch)
    return {"type": "sent", "sent_bytes": sent, "blocked_s": blocked_s,
            "closed_after_s": closed_after, "seconds": time.monotonic() - start}


async def run_deaf(spec: dict[str, Any]) -> dict[str, Any]:
    reader = await stdin_lines()
    sock = await asyncio.to_thread(_upgrade, spec["endpoint"], spec["queue"])
    try:
        emit({"type": "ready"})
        await wait_for_line(reader, "go", 120)
        emit(await asyncio.to_thread(_send_deaf, sock, deaf_batch(spec["mix"]) * 16,
                                     float(spec["seconds"]),
                                     int(spec.get("limit_bytes", 1 << 30))))
        await wait_for_line(reader, "close", 120)
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    return {"type": "result"}


ROLES: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "idle": run_idle,
    "pretls": run_pretls,
    "deaf": run_deaf,
}
