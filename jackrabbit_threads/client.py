"""The blocking client: protocol v1 over one TLS connection, pipelined across threads.

The logic is the core's ``ClientProtocol`` (matching replies to requests, cumulative acks,
roles, what fails when the connection is lost, when to reconnect); this module moves its bytes
with one reader thread, sleeps its back-off and wakes the threads waiting. It is the blocking
twin of ``jackrabbit_asyncio.Client``, with the same names::

    with Client.connect("wss://127.0.0.1:8443", ca="tmp/dev-certs/ca.pem") as client:
        seq = client.add(b"hello")
        for message in client.take():
            print(message.seq, message.data)
            message.ack()

Pipelining: ``add`` may be called from any number of threads at once. A call holds the
client's ``_lock`` only to update the protocol; whichever thread holds the connection's
``send_lock`` then encrypts and writes everything queued, in one ``sendall``, and a thread that
finds it taken leaves its bytes to the holder (so the reader thread never waits behind a slow
``sendall``). Acks are cumulative, so acks made while another thread is writing are sent as one
ack of the highest seq (always before any request queued after them). Replies are settled by
the reader thread only.

Reconnecting (``reconnect=True``) works as in the asyncio client: at once, then with back-off
(0.1 s doubling up to 5 s, until ``close()``), a consumer takes again and joins the *end* of
the line; adds waiting for their reply fail with ``ConnectionLost`` (maybe stored: use an
idempotency ``key`` to retry); adds made meanwhile leave on the new connection; deliveries not
yet read are discarded (the server delivers them again); 401 or 403 (``AccessDenied``) ends it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Unpack, cast

from jackrabbit_core.client import Added, ClientProtocol, Phase, Role, RoleChanged
from jackrabbit_core.client_errors import AccessDenied, ClientError, ConnectionLost
from jackrabbit_host.client import ClientBase, ClientOptions, Reply
from jackrabbit_host.client import Message as BaseMessage

from .tls import RECV_SIZE, TLSStream

__all__ = ["AccessDenied", "Client", "ClientError", "ConnectionLost", "Message", "Role"]

log = logging.getLogger("jackrabbit.threads.client")


class Message(BaseMessage):
    """A delivered message; call ``ack()`` once it is handled."""

    __slots__ = ()

    def ack(self) -> None:
        """Acknowledge this message and every earlier one (protocol §3.3).

        Does nothing if the connection it came on is gone: the server delivers it again.
        """
        self._client._ack(self.seq, self._generation)


class _Waiter:
    """The threads waiting for one request's reply: settled once, by the reader thread."""

    __slots__ = ("_done", "error", "result")

    def __init__(self) -> None:
        self._done = threading.Lock()  # held until settled: cheaper than an Event
        self._done.acquire()
        self.result: Reply | None = None
        self.error: ClientError | None = None

    def settle(self, outcome: Reply | ClientError) -> None:
        if self.result is not None or self.error is not None:
            return
        if isinstance(outcome, ClientError):
            self.error = outcome
        else:
            self.result = outcome
        self._done.release()

    def wait(self) -> Reply:
        with self._done:
            pass
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class _Link:
    """One TLS connection (one ``generation`` of the client's protocol) and the lock of the
    one thread writing to it."""

    def __init__(self, sock: socket.socket, tls: TLSStream, generation: int) -> None:
        self.sock = sock
        self.tls = tls
        self.generation = generation
        self.send_lock = threading.Lock()
        #: Set once a write failed: the reader is about to see the end.
        self.broken = False
        #: Set once the socket is closed.
        self.lost = threading.Event()

    def abort(self) -> None:
        """Stop the socket both ways, which ends the reader's ``recv``."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


class Client(ClientBase[_Waiter]):
    """A connection to one queue of a jackrabbit server. Make one with
    ``Client.connect(...)``; see the module docstring for pipelining and reconnecting."""

    message_type = Message

    def __init__(self, url: str, queue: str | None = None, **options: Unpack[ClientOptions]):
        """Set up, without connecting: use ``connect``."""
        super().__init__(url, queue, options)
        #: Guards the protocol (and ``_link`` changes).
        self._lock = threading.Lock()
        self._link: _Link | None = None
        #: Notified when a message is delivered and when the client ends.
        self._state = threading.Condition()
        self._took = False
        self._wakeup = threading.Event()  # cuts a reconnection back-off short on close()
        self._reader: threading.Thread | None = None

    @classmethod
    def connect(
        cls, url: str, queue: str | None = None, **options: Unpack[ClientOptions]
    ) -> Client:
        """Connect to ``queue`` at ``url``, as ``jackrabbit_asyncio.Client.connect`` does
        (same options, same errors), on the calling thread; a reader thread then runs."""
        client = cls(url, queue, **options)
        client._open()
        client._reader = threading.Thread(target=client._run, name="jackrabbit-client", daemon=True)
        client._reader.start()
        return client

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------------

    def add(self, data: bytes, key: str | None = None) -> int:
        """Append ``data`` to the queue; returns its seq once it is durable (protocol §3.1).

        With ``key``, a repeat of that key returns the first message's seq and stores nothing.
        Safe to call from many threads at once (the adds are pipelined). Raises
        ``ClientError`` if the server refuses it, ``ConnectionLost`` if the connection is lost
        first.
        """
        reply = self._request(lambda protocol: protocol.add(data, key)).wait()
        assert isinstance(reply, Added)
        return reply.seq

    def take(self, prefetch: int = 1000) -> Iterator[Message]:
        """Join the queue's consumer line (protocol §3.2) and wait for the answer (``role`` is
        then set); returns an iterator over the messages delivered to this consumer, each to
        be ``ack()``-ed. ``prefetch`` bounds the messages delivered and not yet acked. A client
        takes once: calling again returns another iterator over the same deliveries. The
        iteration ends when the connection closes for good (``close()``, or a loss without
        ``reconnect``). Raises ``ClientError`` if the server refuses."""
        if not self._took:
            self._took = True
            self._request(lambda protocol: protocol.take(prefetch)).wait()
        return self._messages()

    def handover(self) -> int:
        """Hand the queue over to the next standby (protocol §3.4) and wait until it is done:
        this consumer is then a standby; returns the new epoch. Raises ``ClientError``
        (``no_standby`` when nobody waits, ``not_active``).

        The switch happens once every message this consumer holds is acked, or after the
        server's ``--handover-timeout``: keep acking (from another thread) while this waits.
        """
        reply = self._request(lambda protocol: protocol.handover()).wait()
        assert isinstance(reply, RoleChanged)
        return reply.epoch

    def close(self) -> None:
        """Close the connection (code 1000), waiting briefly for the server's answer. Pending
        requests fail with ``ConnectionLost``; a ``take`` iteration ends."""
        with self._lock:
            self._protocol.close()
            events = self._protocol.events_received()
        self._wakeup.set()
        self._handle(events)
        link = self._link
        if link is not None and not link.lost.is_set():
            self._flush(link)  # the pending ack, then the close frame
            if threading.current_thread() is self._reader:
                return  # called from on_role: the reader finishes the close
            if not link.lost.wait(self.close_timeout):
                link.abort()
                link.lost.wait(self.close_timeout)
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(self.close_timeout)
        self._wake_reader()

    # -- moving bytes ---------------------------------------------------------------------

    def _request(self, make: Callable[[ClientProtocol], int]) -> _Waiter:
        """Queue a request and return what waits for its reply (a handover's is shared)."""
        with self._lock:
            protocol = self._protocol
            req = make(protocol)
            waiter = self._waiting.get(req)
            if waiter is None:
                waiter = self._waiting[req] = _Waiter()
            crowded = protocol.buffered > self.high_water
        link = self._link
        if link is not None:
            self._flush(link, wait=crowded)
        return waiter

    def _ack(self, seq: int, generation: int) -> None:
        with self._lock:
            self._protocol.ack(seq, generation)
        link = self._link
        if link is not None:
            self._flush(link)

    def _flush(self, link: _Link, wait: bool = False) -> None:
        """Write what the protocol has for ``link``, unless another thread is at it (it then
        writes ours too), or, with ``wait``, after that thread is done. Bytes for a newer
        connection than ``link`` are left to it."""
        protocol = self._protocol
        while link.send_lock.acquire(blocking=wait):
            try:
                with self._lock:
                    current = link.generation == protocol.generation
                    data = protocol.data_to_send() if current else b""
                if data:
                    link.sock.sendall(link.tls.encrypt(data))
            except OSError:
                link.broken = True
                link.abort()
            finally:
                link.send_lock.release()
            # A thread that found the lock taken left its bytes (or ack) to us.
            if not (current and protocol.wants_write) or link.broken:
                return
            wait = False

    def _messages(self) -> Iterator[Message]:
        state, deliveries = self._state, self._deliveries
        while True:
            with state:
                while not deliveries and not self._protocol.ended:
                    state.wait()
                if not deliveries:
                    return
                message = deliveries.popleft()
            yield cast(Message, message)

    # -- connecting and the reader thread -------------------------------------------------

    def _open(self) -> _Link:
        """Connect, handshake and upgrade the protocol's current connection attempt on the
        calling thread; returns the open connection, now current."""
        endpoint, protocol = self._endpoint, self._protocol
        try:
            sock = socket.create_connection((endpoint.host, endpoint.port), self.connect_timeout)
        except OSError as exc:
            self._failed(exc)
            raise
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = TLSStream(sock, self._context, server_side=False, server_hostname=endpoint.host)
            tls.handshake(self.connect_timeout)
            link = _Link(sock, tls, protocol.generation)
            self._flush(link, wait=True)  # the upgrade request
            sock.settimeout(self.connect_timeout)
            while protocol.phase is Phase.CONNECTING:
                self._receive(link, sock.recv(RECV_SIZE))
            if protocol.phase is Phase.CLOSED:
                raise protocol.error()
            sock.settimeout(None)
        except BaseException as exc:
            sock.close()
            self._failed(exc)
            raise
        self._link = link
        self._flush(link)  # a consumer's take, and the requests made while connecting
        return link

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self._protocol.transport_failed(str(exc) or type(exc).__name__)
            events = self._protocol.events_received()
        self._handle(events)

    def _receive(self, link: _Link, raw: bytes) -> bool:
        """Feed what ``link`` read (``b""``: the end) to the protocol, write what it answers,
        handle its events; returns whether the connection is over."""
        try:
            plaintext = link.tls.decrypt(raw)[0] if raw else b""
        except OSError:  # ssl.SSLError too
            raw = plaintext = b""
        if raw and not plaintext:
            return False  # TLS's own records (session tickets, close_notify)
        with self._lock:
            self._protocol.receive_data(plaintext or None)
            events = self._protocol.events_received()
            over = self._protocol.phase is Phase.CLOSED
        self._flush(link)  # pongs, the close echo
        self._handle(events)
        if over and raw:  # the close handshake is over: end TLS, wait for the hang-up
            self._flush(link, wait=True)
            with link.send_lock, contextlib.suppress(OSError):
                link.sock.sendall(link.tls.close_notify())
            _drain(link.sock, self.close_timeout)
        return over

    def _run(self) -> None:
        try:
            link = self._link
            while link is not None:
                self._read(link)
                link = self._reconnect()
        except Exception:
            log.exception("client reader failed")
        finally:
            self._wake_reader()

    def _read(self, link: _Link) -> None:
        """Read ``link`` until it ends; then its socket is closed and ``lost`` set."""
        try:
            while True:
                try:
                    raw = link.sock.recv(RECV_SIZE)
                except OSError:
                    raw = b""
                if self._receive(link, raw):
                    return
        finally:
            link.sock.close()
            link.lost.set()

    def _reconnect(self) -> _Link | None:
        """Connect again when the protocol says, until it works (the new connection) or the
        protocol says the client is over (None)."""
        protocol = self._protocol
        while (when := protocol.next_attempt(time.monotonic())) is not None:
            self._wakeup.wait(max(0.0, when - time.monotonic()))
            with self._lock:
                if protocol.ended:
                    return None
                protocol.reconnect()
            try:
                return self._open()
            except (OSError, ClientError) as exc:  # TimeoutError and ssl.SSLError are OSErrors
                self._attempt_failed(exc)
        return None

    # -- what ClientBase asks of a runtime ------------------------------------------------

    def _wake(self, waiter: _Waiter, outcome: Reply | ClientError) -> None:
        waiter.settle(outcome)

    def _wake_reader(self) -> None:
        with self._state:
            self._state.notify_all()


def _drain(sock: socket.socket, timeout: float) -> None:
    """Read (for up to ``timeout`` seconds) until the server ends the TCP connection."""
    sock.settimeout(timeout)
    with contextlib.suppress(OSError):
        while sock.recv(RECV_SIZE):
            pass
