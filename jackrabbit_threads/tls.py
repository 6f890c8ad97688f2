"""TLS over a plain socket that one thread reads while another writes.

OpenSSL forbids using one ``SSL`` object from two threads at once, so an ``ssl.SSLSocket``
must not be in ``recv`` on one thread while another thread is in ``sendall``: it works most of
the time and corrupts the stream under load (python/cpython#76714, openssl/openssl#20446).
``TLSStream`` therefore keeps the TLS state in an ``ssl.SSLObject`` over two memory buffers,
under a lock held only for the CPU work of encrypting or decrypting; the socket underneath is
plain TCP, which one thread may ``recv`` from while another sends. Nothing here touches the
socket but the blocking ``handshake()`` (the client's): the server's front door drives many
handshakes at once with ``advance()``, on non-blocking sockets.

The one rule for callers: the bytes ``encrypt()`` returns must reach the socket in the order
they were returned, so one thread at a time sends them (the server's writer, the client's
sender).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from typing import Final

#: Bytes asked of the socket per ``recv``.
RECV_SIZE: Final = 256 * 1024
#: Plaintext asked of OpenSSL per ``read`` (a TLS record holds at most 16 KiB).
_READ_SIZE: Final = 256 * 1024


class TLSStream:
    """The TLS layer of one connection; ``sock`` stays a plain TCP socket."""

    __slots__ = ("_incoming", "_lock", "_outgoing", "_tls", "eof", "sock")

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        self.sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
        )
        self._lock = threading.Lock()
        #: True once the peer sent its TLS ``close_notify``.
        self.eof = False

    def handshake(self, timeout: float | None) -> None:
        """Run the TLS handshake on the calling thread, before any other use.

        Raises ``TimeoutError`` past ``timeout`` seconds, ``ssl.SSLError`` for a peer that does
        not speak TLS (garbage, plain HTTP), ``ConnectionError`` if it hangs up, or another
        ``OSError``. The socket is left blocking without a timeout.
        """
        sock = self.sock
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self.advance(b"")
        while True:
            self._send_pending(deadline)
            if done:
                break
            if deadline is not None:
                sock.settimeout(_remaining(deadline))
            data = sock.recv(RECV_SIZE)
            if not data:
                raise ConnectionResetError("connection closed during the TLS handshake")
            done = self.advance(data)
        sock.settimeout(None)

    def advance(self, data: bytes) -> bool:
        """Feed the handshake bytes read from the socket (``b""`` to start it); True once it
        is done. Never blocks: the caller sends what ``encrypt(b"")`` then returns and reads
        more, however it likes (the server's front door does it for many at once).

        Raises ``ssl.SSLError`` for a peer that does not speak TLS.
        """
        with self._lock:
            if data:
                self._incoming.write(data)
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                return False
            return True

    def _send_pending(self, deadline: float | None) -> None:
        pending = self.encrypt(b"")
        if pending:
            if deadline is not None:
                self.sock.settimeout(_remaining(deadline))
            self.sock.sendall(pending)

    def decrypt(self, data: bytes) -> tuple[bytes, bool]:
        """Feed bytes read from the socket; return the plaintext they complete (maybe empty)
        and whether TLS itself now has bytes to send (then ``encrypt(b"")`` fetches them).

        Sets ``eof`` on the peer's ``close_notify``; raises ``ssl.SSLError`` on bad records.
        """
        tls = self._tls
        chunks: list[bytes] = []
        with self._lock:
            if data:
                self._incoming.write(data)
            while True:
                try:
                    chunk = tls.read(_READ_SIZE)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    self.eof = True
                    break
                if not chunk:
                    self.eof = True
                    break
                chunks.append(chunk)
            to_send = self._outgoing.pending > 0
        plaintext = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return plaintext, to_send

    def encrypt(self, data: bytes) -> bytes:
        """The bytes to write to the socket for ``data``, after anything TLS had pending."""
        with self._lock:
            if data:
                self._tls.write(data)
            return self._outgoing.read()

    def peercert(self) -> dict[str, object] | None:
        """The peer's certificate as ``ssl.SSLObject.getpeercert()`` gives it (after the
        handshake): None when it presented none, which is verified when it is there."""
        return self._tls.getpeercert()  # type: ignore[return-value]

    def close_notify(self) -> bytes:
        """The bytes of a TLS ``close_notify``, the polite last thing to send."""
        with self._lock:
            # SSLWantReadError is expected: the peer's own close_notify has not come.
            with contextlib.suppress(ssl.SSLError, ValueError):
                self._tls.unwrap()
            return self._outgoing.read()


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the TLS handshake timed out")
    return remaining
