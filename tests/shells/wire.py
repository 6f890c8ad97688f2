"""Raw peers: the core's ``ClientProtocol`` over a plain ``ssl`` socket, single-threaded, for
tests that must see close codes and HTTP statuses, or misbehave (never read, never answer);
and the frames such a peer sends by hand."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import time
from collections.abc import Callable

from jackrabbit_core.client import ClientEvent, ClientProtocol, Closed, Opened

HOST = "127.0.0.1"
WAIT = 15.0


def tls_socket(port: int, ca: str, *, rcvbuf: int | None = None) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=ca)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(WAIT)
    raw.connect((HOST, port))
    return context.wrap_socket(raw, server_hostname=HOST)


class Peer:
    """Talks only when told to: ``flush()`` sends what its protocol has to say (requests,
    pongs), ``wait_for`` reads. ``last_sent`` is when it last began to send."""

    def __init__(self, port: int, ca: str, path: str = "/", *, rcvbuf: int | None = None) -> None:
        self.sock = tls_socket(port, ca, rcvbuf=rcvbuf)
        self.protocol = ClientProtocol(f"{HOST}:{port}", path)
        self.last_sent = time.monotonic()
        self.flush()

    @classmethod
    def opened(cls, port: int, ca: str, path: str = "/", *, rcvbuf: int | None = None) -> Peer:
        """A peer past the WebSocket upgrade."""
        peer = cls(port, ca, path, rcvbuf=rcvbuf)
        peer.wait_for(lambda e: isinstance(e, Opened))
        return peer

    def flush(self) -> None:
        data = self.protocol.data_to_send()
        if data:
            self.last_sent = time.monotonic()
            self.sock.sendall(data)

    def wait_for(self, match: Callable[[ClientEvent], bool]) -> list[ClientEvent]:
        """Read until an event matches; return all the events up to it."""
        seen: list[ClientEvent] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except (ssl.SSLError, ConnectionError):
                data = b""
            self.protocol.receive_data(data or None)
            self.flush_quietly()
            for event in self.protocol.events_received():
                seen.append(event)
                if match(event):
                    return seen
            if not data:
                raise AssertionError(f"connection ended without the event; saw {seen}")

    def closed(self) -> Closed:
        events = self.wait_for(lambda e: isinstance(e, Closed))
        last = events[-1]
        assert isinstance(last, Closed)
        return last

    def flush_quietly(self) -> None:
        with contextlib.suppress(OSError):
            self.flush()

    def wait_dropped(self) -> float:
        """Read, never answering, until the server hangs up; return how long that was after
        this peer last began to send (the server heard it no earlier)."""
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            while self.sock.recv(65536):
                pass
        return time.monotonic() - self.last_sent

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        """Close with a reset: no TIME_WAIT left behind on our side."""
        abort(self.sock)


def abort(sock: socket.socket) -> None:
    """Close ``sock`` with a reset."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 §5.2), for peers that build their own."""
    mask = b"\x5a\xa5\x0f\xf0"
    size = len(payload)
    length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack("!H", size)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode]) + length + mask + masked


def http(port: int, ca: str, request: bytes) -> bytes:
    """Send a raw HTTP request over TLS; return the whole response."""
    sock = tls_socket(port, ca)
    with sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ssl.SSLError, ConnectionError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)
