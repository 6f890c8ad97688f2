"""The blocking client: protocol v1 over one TLS connection, pipelined across threads.

It drives ``jackrabbit_core.client.ClientProtocol`` (the sans-I/O client) with one reader
thread; it is the blocking twin of ``jackrabbit_asyncio.Client``, with the same names::

    with Client.connect("wss://127.0.0.1:8443", ca="tmp/dev-certs/ca.pem") as client:
        seq = client.add(b"hello")
        for message in client.take():
            print(message.seq, message.data)
            message.ack()

Pipelining: ``add`` may be called from any number of threads at once. Each call queues its
frame and waits for the reply that carries its ``req``. A call holds the connection's ``lock``
only to update the protocol; whichever thread holds ``send_lock`` then encrypts and writes
everything queued, in one ``sendall``, and a thread that finds it taken leaves its bytes to
the holder (so the reader thread never waits behind a slow ``sendall``). Acks are cumulative,
so acks made while another thread is writing are sent as one ack of the highest seq (always
before any request queued after them). Replies are settled by the reader thread only.

Reconnecting (``reconnect=True``): when the connection is lost, the client reconnects with
exponential back-off (``RETRY_FIRST`` doubling up to ``RETRY_MAX`` seconds, until ``close()``)
and, if it was a consumer, sends ``take`` again: it joins the *end* of the consumer line.
Adds that were waiting for their reply fail with ``ConnectionLost`` (a ``ConnectionError``):
such a message may or may not have been stored; give each message an idempotency ``key`` to
retry without risking a duplicate. Adds made while the client is reconnecting wait for the new
connection. Deliveries not yet read from the iterator when the connection drops are discarded;
the server delivers them again, ``redelivered=True``, to whichever consumer is active.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import socket
import ssl as ssl_module
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Literal

from jackrabbit_core.client import (
    Added,
    ClientEvent,
    ClientProtocol,
    Closed,
    Delivery,
    Endpoint,
    Opened,
    RoleChanged,
    ServerError,
    Subscribed,
)
from jackrabbit_core.codes import CLOSE_NORMAL

from .tls import RECV_SIZE, TLSStream

__all__ = ["Client", "ClientError", "ConnectionLost", "Message", "Role"]

log = logging.getLogger("jackrabbit.threads.client")

Role = Literal["active", "standby"]

#: Seconds allowed for TCP connect, TLS and the WebSocket upgrade.
CONNECT_TIMEOUT: Final = 10.0
#: Seconds ``close()`` waits for the server's half of the close handshake.
CLOSE_TIMEOUT: Final = 5.0
#: Reconnection back-off, seconds: first and largest delay.
RETRY_FIRST: Final = 0.1
RETRY_MAX: Final = 5.0
#: Queued outgoing bytes past which a new request waits for them to be written.
HIGH_WATER: Final = 1024 * 1024


class ClientError(Exception):
    """A request was refused: ``code`` is the protocol's error code (``not_active``,
    ``no_standby``, ``too_large``...), ``message`` the server's explanation."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConnectionLost(ClientError, ConnectionError):
    """The connection is gone (or was never made): ``code`` is ``"closed"`` or ``"refused"``.

    For a pending ``add`` this means *unknown*: the message may or may not be stored (see the
    module docstring on idempotency keys).
    """


@dataclass(frozen=True, slots=True)
class Message:
    """A delivered message; call ``ack()`` once it is handled (acks are cumulative: acking it
    acknowledges every earlier message too)."""

    seq: int
    #: The message's UUID.
    id: str
    #: When the server accepted it, Unix time in milliseconds.
    created_at: int
    data: bytes
    #: True when an earlier consumer was sent this message and did not ack it.
    redelivered: bool
    _link: _Link = field(repr=False, compare=False)

    def ack(self) -> None:
        """Acknowledge this message and every earlier one (protocol §3.3).

        Does nothing if the connection it came on is gone: the server delivers it again.
        """
        self._link.ack(self.seq)


Reply = Added | Subscribed | RoleChanged


class _Waiter:
    """One request waiting for its reply: settled once, by the reader thread."""

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
    """One TLS connection and its ``ClientProtocol``: the state that dies with it."""

    def __init__(self, sock: socket.socket, tls: TLSStream, protocol: ClientProtocol) -> None:
        self.sock = sock
        self.tls = tls
        self.protocol = protocol
        #: Guards the protocol, ``outbox`` and the request bookkeeping below.
        self.lock = threading.Lock()
        #: Held by the one thread writing to the socket.
        self.send_lock = threading.Lock()
        self.outbox: list[bytes] = []
        self.outbox_bytes = 0
        #: Requests waiting for their reply, by ``req``.
        self.waiting: dict[int, _Waiter] = {}
        self.take_req: int | None = None
        self.take_answer: _Waiter | None = None
        self.handover_req: int | None = None
        self.handover_answer: _Waiter | None = None
        #: The highest seq acked but not yet handed to the protocol (0: none).
        self.ack_pending = 0
        #: Set once the link failed: no request may be added any more.
        self.failed = False
        #: Set once the socket is closed.
        self.lost = threading.Event()
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def usable(self) -> bool:
        """Open: requests can be sent on it."""
        return not self.failed and not self.protocol.closed

    def request(
        self, make: Callable[[ClientProtocol], int], kind: Literal["add", "take", "handover"]
    ) -> _Waiter:
        """Queue a request (after any pending ack) and what waits for its reply; raises
        ``ConnectionLost`` if the link failed. Call ``flush()`` next."""
        waiter = _Waiter()
        with self.lock:
            if not self.usable:
                raise ConnectionLost("closed", "the connection is closed")
            self._queue_ack()
            req = make(self.protocol)
            if kind == "add":
                self.waiting[req] = waiter
            elif kind == "take":
                self.take_req, self.take_answer = req, waiter
            else:
                self.handover_req, self.handover_answer = req, waiter
            self._queue_output()
        return waiter

    def ack(self, seq: int) -> None:
        with self.lock:
            if not self.usable or seq <= self.ack_pending:
                return
            self.ack_pending = seq
        self.flush()

    def close(self) -> None:
        """Start the close handshake (code 1000), pending acks first."""
        with self.lock:
            if self.usable:
                self._queue_ack()
                self.protocol.close(CLOSE_NORMAL)
                self._queue_output()
        self.flush()

    def _queue_ack(self) -> None:
        if self.ack_pending:
            self.protocol.ack(self.ack_pending)
            self.ack_pending = 0

    def _queue_output(self) -> None:
        """Move the protocol's bytes to the outbox. Call with ``lock`` held."""
        data = self.protocol.data_to_send()
        if data:
            self.outbox.append(data)
            self.outbox_bytes += len(data)

    def flush(self, wait: bool = False) -> None:
        """Write the outbox, unless another thread is at it (it then writes ours too), or,
        with ``wait``, after that thread is done."""
        while self.send_lock.acquire(blocking=wait):
            try:
                with self.lock:
                    self._queue_ack()
                    self._queue_output()
                    chunks, self.outbox, self.outbox_bytes = self.outbox, [], 0
                if chunks:
                    self.sock.sendall(self.tls.encrypt(b"".join(chunks)))
            except OSError:
                self.abort()
            finally:
                self.send_lock.release()
            # A thread that found the lock taken left its bytes (or ack) to us.
            if not (self.outbox or self.ack_pending) or self.failed:
                return
            wait = False

    def end_tls(self) -> None:
        """Send TLS's ``close_notify`` after everything queued (a server may wait for it)."""
        self.flush(wait=True)
        with self.send_lock, contextlib.suppress(OSError):
            self.sock.sendall(self.tls.close_notify())

    def fail(self, error: ClientError) -> None:
        """Fail everything waiting on this link (from the reader thread)."""
        with self.lock:
            self.failed = True
            waiting, self.waiting = self.waiting, {}
        for waiter in (*waiting.values(), self.take_answer, self.handover_answer):
            if waiter is not None:
                waiter.settle(error)

    def abort(self) -> None:
        """Stop the socket both ways, which ends the reader's ``recv``."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


class Client:
    """A connection to one queue of a jackrabbit server. Make one with
    ``Client.connect(...)``; see the module docstring for pipelining and reconnecting."""

    def __init__(
        self,
        url: str,
        queue: str | None = None,
        *,
        ca: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        reconnect: bool = False,
        on_role: Callable[[Role, int | None], None] | None = None,
    ) -> None:
        """Set up, without connecting: use ``connect``."""
        self._endpoint = Endpoint.parse(url, queue)
        self.url = url
        self.queue = self._endpoint.queue
        self._host = self._endpoint.host
        self._port = self._endpoint.port
        self._context = ssl if ssl is not None else ssl_module.create_default_context(cafile=ca)
        self.reconnect = reconnect
        #: ``"active"`` or ``"standby"`` once ``take`` was answered; None before (and while
        #: reconnecting).
        self.role: Role | None = None
        #: The queue's epoch while this consumer is active (protocol §4.2).
        self.epoch: int | None = None
        #: Called as ``on_role(role, epoch)`` from the reader thread whenever the role changes.
        self.on_role = on_role
        self._link: _Link | None = None
        #: Guards ``_link`` changes and the deliveries; notified on both.
        self._state = threading.Condition()
        self._deliveries: collections.deque[Message] = collections.deque()
        self._prefetch: int | None = None  # set by take(): sent again after a reconnection
        self._ended = False
        self._closing = False
        self._wake = threading.Event()  # cuts a reconnection back-off short on close()
        self._reader: threading.Thread | None = None

    @classmethod
    def connect(
        cls,
        url: str,
        queue: str | None = None,
        *,
        ca: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        reconnect: bool = False,
        on_role: Callable[[Role, int | None], None] | None = None,
    ) -> Client:
        """Connect to ``queue`` at ``url`` (``wss://HOST:PORT``; a ``/queues/NAME`` path names
        the queue too: giving both is an error unless they agree, neither means ``default``).
        Raises ``ValueError`` for a URL or queue name that cannot be used.

        ``ca`` is a CA file to trust (e.g. the ``--dev`` CA); ``ssl`` a complete client
        context instead; neither means the system's trust store. Raises ``OSError`` if the
        server cannot be reached (``TimeoutError`` after ``CONNECT_TIMEOUT``), ``ssl.SSLError``
        for a certificate problem, and ``ConnectionLost`` (code ``refused``) if the server
        refuses the WebSocket upgrade (an HTTP status: 404 bad queue name, 503 full...).
        """
        client = cls(url, queue, ca=ca, ssl=ssl, reconnect=reconnect, on_role=on_role)
        client._link = client._open()
        client._reader = threading.Thread(target=client._run, name="jackrabbit-client", daemon=True)
        client._reader.start()
        return client

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code of the last connection once it ended (1001: the server
        shut down; 1006: it broke), else None."""
        link = self._link
        return None if link is None else link.close_code

    @property
    def close_reason(self) -> str:
        """The reason that came with ``close_code``."""
        link = self._link
        return "" if link is None else link.close_reason

    # -- requests -------------------------------------------------------------------------

    def add(self, data: bytes, key: str | None = None) -> int:
        """Append ``data`` to the queue; returns its seq once it is durable (protocol §3.1).

        With ``key``, a repeat of that key returns the first message's seq and stores nothing.
        Safe to call from many threads at once (the adds are pipelined). Raises
        ``ClientError`` if the server refuses it, ``ConnectionLost`` if the connection is lost
        first.
        """
        while True:
            link = self._ready()
            try:
                waiter = link.request(lambda protocol: protocol.add(data, key), "add")
            except ConnectionLost:
                continue  # lost before anything was sent: wait for the next link, or raise
            link.flush(wait=link.outbox_bytes > HIGH_WATER)
            result = waiter.wait()
            assert isinstance(result, Added)
            return result.seq

    def take(self, prefetch: int = 1000) -> Iterator[Message]:
        """Join the queue's consumer line (protocol §3.2) and wait for the answer (``role`` is
        then set); returns an iterator over the messages delivered to this consumer, each to
        be ``ack()``-ed. ``prefetch`` bounds the messages delivered and not yet acked. A client
        takes once: calling again returns another iterator over the same deliveries. The
        iteration ends when the connection closes for good (``close()``, or a loss without
        ``reconnect``). Raises ``ClientError`` if the server refuses."""
        if self._prefetch is None:
            self._prefetch = prefetch
            self._send_take(self._ready(), prefetch).wait()
        return self._messages()

    def handover(self) -> int:
        """Hand the queue over to the next standby (protocol §3.4) and wait until it is done:
        this consumer is then a standby; returns the new epoch. Raises ``ClientError``
        (``no_standby`` when nobody waits, ``not_active``).

        The switch happens once every message this consumer holds is acked, or after the
        server's ``--handover-timeout``: keep acking (from another thread) while this waits.
        """
        link = self._ready()
        answer = link.handover_answer
        if answer is None or answer.result is not None or answer.error is not None:
            answer = link.request(lambda protocol: protocol.handover(), "handover")
            link.flush()
        result = answer.wait()
        assert isinstance(result, RoleChanged)
        return result.epoch

    def close(self) -> None:
        """Close the connection (code 1000), waiting briefly for the server's answer. Pending
        requests fail with ``ConnectionLost``; a ``take`` iteration ends."""
        with self._state:
            self._closing = True
            self._state.notify_all()  # adds waiting for a reconnection now raise
        self._wake.set()
        link = self._link
        if link is not None and not link.lost.is_set():
            link.close()
            if threading.current_thread() is self._reader:
                return  # called from on_role: the reader finishes the close
            if not link.lost.wait(CLOSE_TIMEOUT):
                link.abort()
                link.lost.wait(CLOSE_TIMEOUT)
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(CLOSE_TIMEOUT)
        self._end()

    # -- connecting -----------------------------------------------------------------------

    def _open(self) -> _Link:
        """Connect, handshake and upgrade on the calling thread; returns the open link."""
        sock = socket.create_connection((self._host, self._port), timeout=CONNECT_TIMEOUT)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = TLSStream(sock, self._context, server_side=False, server_hostname=self._host)
            tls.handshake(CONNECT_TIMEOUT)
            protocol = self._endpoint.protocol()
            sock.settimeout(CONNECT_TIMEOUT)
            sock.sendall(tls.encrypt(protocol.data_to_send()))
            while True:
                raw = sock.recv(RECV_SIZE)
                plaintext = tls.decrypt(raw)[0] if raw else b""
                if raw and not plaintext:
                    continue  # TLS's own records (session tickets)
                protocol.receive_data(plaintext or None)
                events = protocol.events_received()
                if any(isinstance(event, Opened) for event in events):
                    break
                for event in events:
                    if isinstance(event, Closed):
                        raise ConnectionLost("refused", event.reason)
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        link = _Link(sock, tls, protocol)
        link.flush()  # a pong or anything else the protocol answered during the upgrade
        return link

    def _ready(self) -> _Link:
        """The current usable link, waiting for a reconnection; raises ``ConnectionLost`` once
        there will be none."""
        with self._state:
            while True:
                if self._closing:
                    raise ConnectionLost("closed", "the client is closed")
                link = self._link
                if link is not None and link.usable:
                    return link
                if not self.reconnect or self._ended:
                    raise ConnectionLost("closed", "the connection is closed")
                self._state.wait()

    def _send_take(self, link: _Link, prefetch: int) -> _Waiter:
        answer = link.request(lambda protocol: protocol.take(prefetch), "take")
        link.flush()
        return answer

    def _messages(self) -> Iterator[Message]:
        state, deliveries = self._state, self._deliveries
        while True:
            with state:
                while not deliveries and not self._ended:
                    state.wait()
                if not deliveries:
                    return
                message = deliveries.popleft()
            yield message

    def _end(self) -> None:
        """No more deliveries: end the ``take`` iteration, fail waits for a reconnection."""
        with self._state:
            self._ended = True
            self._state.notify_all()

    # -- the reader thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            link = self._link
            while link is not None:
                self._read(link)
                self._lost(link)
                link = self._reconnect() if self.reconnect and not self._closing else None
        except Exception:
            log.exception("client reader failed")
        finally:
            self._end()

    def _read(self, link: _Link) -> None:
        """Read ``link`` until it ends; then its socket is closed and ``lost`` set."""
        sock, tls, protocol = link.sock, link.tls, link.protocol
        try:
            while True:
                try:
                    raw = sock.recv(RECV_SIZE)
                    plaintext = tls.decrypt(raw)[0] if raw else b""
                except OSError:  # ssl.SSLError too
                    raw = plaintext = b""
                if raw and not plaintext:
                    continue  # TLS's own records (session tickets, close_notify)
                with link.lock:
                    protocol.receive_data(plaintext or None)
                    events = protocol.events_received()
                    link._queue_output()  # pongs, the close echo
                link.flush()
                self._handle(link, events)
                if protocol.closed:
                    if raw:  # the close handshake is over: end TLS, wait for the hang-up
                        link.end_tls()
                        _drain(sock)
                    return
        finally:
            sock.close()
            link.lost.set()

    def _lost(self, link: _Link) -> None:
        """``link``'s socket is gone."""
        link.fail(ConnectionLost("closed", "the connection was lost"))
        self._set_role(None, None)
        with self._state:
            if self.reconnect and not self._closing:
                self._deliveries.clear()  # their acks cannot reach the server: they come again

    def _reconnect(self) -> _Link | None:
        """Connect again, with back-off, until it works (the new link) or ``close()``
        (None); a consumer takes again."""
        delay = RETRY_FIRST
        log.info("connection to %s lost: reconnecting", self.url)
        while not self._closing:
            try:
                link = self._open()
            except (OSError, ClientError) as exc:  # TimeoutError and ssl.SSLError are OSErrors
                log.info("reconnecting to %s failed: %s", self.url, exc)
                self._wake.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            with self._state:
                self._link = link
                self._state.notify_all()
            if self._prefetch is not None:
                with contextlib.suppress(ConnectionLost):
                    self._send_take(link, self._prefetch)
            return link
        return None

    # -- events ---------------------------------------------------------------------------

    def _handle(self, link: _Link, events: list[ClientEvent]) -> None:
        for event in events:
            if isinstance(event, Delivery):
                message = Message(
                    event.seq, event.id, event.created_at, event.data, event.redelivered, link
                )
                with self._state:
                    if link is self._link:
                        self._deliveries.append(message)
                        self._state.notify()
            elif isinstance(event, Added):
                waiter = link.waiting.pop(event.req, None)  # one atomic step
                if waiter is not None:
                    waiter.settle(event)
            elif isinstance(event, Subscribed):
                self._set_role(event.role, event.epoch)
                # one take per link, so its answer needs no matching by req
                if link.take_answer is not None:
                    link.take_answer.settle(event)
            elif isinstance(event, RoleChanged):
                self._set_role(event.role, event.epoch)
                if event.role == "standby" and link.handover_answer is not None:
                    link.handover_answer.settle(event)
            elif isinstance(event, ServerError):
                self._error(link, event)
            elif isinstance(event, Closed):
                link.close_code, link.close_reason = event.code, event.reason

    def _error(self, link: _Link, error: ServerError) -> None:
        exc = ClientError(error.code, error.message)
        req = error.req
        if isinstance(req, int):
            waiter = link.waiting.pop(req, None)
            if waiter is None and req == link.take_req:
                waiter = link.take_answer
            if waiter is None and req == link.handover_req:
                waiter = link.handover_answer
            if waiter is not None:
                waiter.settle(exc)
                return
        log.warning("server error: %s", exc)

    def _set_role(self, role: Role | None, epoch: int | None) -> None:
        changed = (role, epoch) != (self.role, self.epoch)
        self.role, self.epoch = role, epoch
        callback = self.on_role
        if changed and callback is not None and role is not None:
            try:
                callback(role, epoch)
            except Exception:
                log.exception("on_role callback failed")


def _drain(sock: socket.socket) -> None:
    """Read (briefly) until the server ends the TCP connection after a close."""
    sock.settimeout(CLOSE_TIMEOUT)
    with contextlib.suppress(OSError):
        while sock.recv(RECV_SIZE):
            pass
