"""A single-threaded raw peer: the core's ``ClientProtocol`` over a plain ``ssl`` socket, for
tests that must see close codes and HTTP statuses, or misbehave (never read)."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable

from jackrabbit_core.client import ClientEvent, ClientProtocol, Closed

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
    def __init__(self, port: int, ca: str, path: str = "/", *, rcvbuf: int | None = None) -> None:
        self.sock = tls_socket(port, ca, rcvbuf=rcvbuf)
        self.protocol = ClientProtocol(f"{HOST}:{port}", path)
        self.flush()

    def flush(self) -> None:
        data = self.protocol.data_to_send()
        if data:
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

    def close(self) -> None:
        self.sock.close()


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
