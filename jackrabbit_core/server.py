"""The facade both shells drive: every connection, every queue, one store, no I/O.

A shell owns sockets, threads or tasks, one timer and a writer for the store; it calls these
methods and then carries out ``actions()``:

==========================================  ===============================================
shell event                                 call
==========================================  ===============================================
a TCP+TLS connection is established         ``conn = server.connect(now)``
bytes arrived on it                         ``server.receive_data(conn, data, now)``
the peer closed it, or it broke             ``server.receive_eof(conn, now)``
its write buffer filled / drained           ``server.set_writable(conn, False/True, now)``
``sent`` bytes of it are written (watched)  ``server.flushed(conn, sent, now)``
the timer fired                             ``server.handle_timer(now)``
a ``WriteBatch`` is durable / failed        ``server.batch_written(now)`` / ``batch_failed()``
SIGTERM or SIGINT                           ``server.shutdown(now)``
==========================================  ===============================================

After **every** call the shell must drain ``actions()`` (``Send``, ``CloseTransport``,
``PauseReading``, ``ResumeReading``, ``WatchFlush``, ``WriteBatch``) and re-arm its single timer at
``next_deadline()``. ``now`` is a monotonic clock in seconds; message ids and timestamps come
from the ``new_id`` and ``clock_ms`` callables the shell passes in, so the core itself reads
no clock and makes no randomness (STYLE practice 2).

Reads of stored messages (a lagging consumer's backlog, redeliveries after a failover) go to
the store synchronously in bounded windows: RocksDB reads are microseconds, and only the
fsync of writes is slow enough to need the writer thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from . import codes, envelope, failover, routes
from .actions import (
    Action,
    CloseTransport,
    PauseReading,
    ResumeReading,
    Send,
    WatchFlush,
    WriteBatch,
)
from .config import Config
from .connection import (
    Connection,
    ConnectionEvent,
    Disconnected,
    HttpRequest,
    MessageReceived,
    Phase,
    UpgradeRequest,
)
from .envelope import Dialect
from .exceptions import InvalidState
from .metrics import Counters, Exposition
from .records import Req, StoredMessage
from .store import Batch, Store

#: Most messages fetched from the store in one read (bounds memory per delivery).
READ_WINDOW = 256
#: About how many bytes of messages one pump hands a consumer's transport before its write
#: buffer gets a chance to push back (``set_writable``); the delivery window in messages is
#: sized from the messages actually delivered, between these bounds.
PUMP_BYTES = 4 * 1024 * 1024
MIN_WINDOW, MAX_WINDOW = 4, 1000
#: After a failed write the next one waits this long, doubling per failure up to
#: ``RETRY_MAX`` seconds, so a full disk is not retried in a busy loop (protocol §7.1).
RETRY_FIRST, RETRY_MAX = 0.05, 2.0
#: Queues rendered into a ``/metrics`` body per turn (a few milliseconds), and scrapes that may
#: wait for one body at a time; more get 503 (protocol §1.2).
SCRAPE_STEP, MAX_SCRAPES = 1000, 8


@dataclass(frozen=True, slots=True)
class Refusal:
    """An authenticator's answer that refuses an upgrade (protocol §1.4)."""

    status: int  #: 401 or 403
    reason: str


#: The authentication hook (protocol §1.4): sees every upgrade request before it is accepted;
#: returns None to let it through or a ``Refusal``. None is configured by default.
Authenticator = Callable[[UpgradeRequest], Refusal | None]


@dataclass(slots=True)
class _Session:
    """What the server knows of an upgraded connection."""

    queue: str
    dialect: Dialect | None = None
    consumer: bool = False
    unconfirmed: int = 0
    #: Bytes of data in those unconfirmed adds.
    unconfirmed_bytes: int = 0
    #: The shell's write buffer for it is full: it does not read what we send.
    unwritable: bool = False
    reading_paused: bool = False
    #: Bytes handed to the shell for this connection so far (``Send`` data, in order).
    emitted: int = 0
    #: An original-dialect consumer's deliveries not yet known written to its socket:
    #: ``(offset, seq)``, every seq up to ``seq`` is written once ``offset`` bytes are
    #: (protocol §8.3). ``unmarked`` is the highest seq delivered since the last ``actions()``.
    flush_marks: deque[tuple[int, int]] | None = None
    unmarked: int = 0


@dataclass(slots=True)
class _Confirmation:
    """An add waiting for its batch to become durable."""

    conn: int
    req: Req
    message: StoredMessage
    duplicate: bool
    dialect: Dialect


@dataclass(slots=True)
class _Pending:
    """A batch and the promises that hang on it."""

    batch: Batch = field(default_factory=Batch)
    confirmations: list[_Confirmation] = field(default_factory=list)
    messages: dict[str, list[StoredMessage]] = field(default_factory=dict)
    epochs: dict[str, int] = field(default_factory=dict)
    keys: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Slot:
    """A queue: its failover state machine plus what the server adds around it."""

    machine: failover.Queue
    next_seq: int
    #: Keys of adds not yet durable, with the batch holding them, so a repeat in flight is
    #: still a duplicate, confirmed with that batch (§6.8).
    pending_keys: dict[str, tuple[StoredMessage, _Pending]] = field(default_factory=dict)
    #: The messages of the last durable batch, served from memory to a caught-up consumer.
    recent: list[StoredMessage] = field(default_factory=list)


class Server:
    """The whole broker as a state machine; see the module docstring for how to drive it."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        new_id: Callable[[], bytes],
        clock_ms: Callable[[], int],
        now: float,
        authenticate: Authenticator | None = None,
    ) -> None:
        self.config = config
        self.counters = Counters()
        self._store = store
        self._new_id = new_id
        self._clock_ms = clock_ms
        self._authenticate = authenticate
        self._now = now
        self._next_conn = 1
        self._conns: dict[int, Connection] = {}
        self._sessions: dict[int, _Session] = {}
        self._slots: dict[str, _Slot] = {}
        self._dirty: dict[int, Connection] = {}
        self._flow: list[Action] = []
        self._filling = _Pending()
        self._writing: _Pending | None = None
        self._to_pump: set[str] = set()
        self._timed: set[str] = set()
        #: Heartbeats and handshake timeouts are checked this often (protocol §9).
        self._sweep_every = min(config.heartbeat, config.handshake_timeout) / 4
        self._next_sweep = now + self._sweep_every
        self._shutting_down = False
        #: No ``WriteBatch`` is handed out before this (back-off after a failed write).
        self._retry_at = now
        self._retry_delay = 0.0
        #: The ``/metrics`` body being rendered, and the connections waiting for it.
        self._exposition: Exposition | None = None
        self._scrapers: list[int] = []
        for record in store.recover():
            self._slots[record.name] = self._new_slot(
                record.name, last_seq=record.last_seq, acked=record.acked, epoch=record.epoch
            )

    # -- the shell's verbs ---------------------------------------------------------------

    def connect(self, now: float) -> int:
        """A new transport is up; returns its connection id for the other calls."""
        self._now = now
        conn_id = self._next_conn
        self._next_conn += 1
        self._conns[conn_id] = Connection(
            conn_id, now, max_message_bytes=self.config.max_message_bytes
        )
        self.counters.connections += 1
        return conn_id

    def receive_data(self, conn_id: int, data: bytes, now: float) -> None:
        """Bytes from the peer of ``conn_id``. Ignored if the core already closed it."""
        self._now = now
        conn = self._conns.get(conn_id)
        if conn is None:
            return
        self._dirty[conn_id] = conn
        self._handle(conn, conn.receive_data(data, now))

    def receive_eof(self, conn_id: int, now: float) -> None:
        """The transport of ``conn_id`` ended (closed, reset or failed)."""
        self._now = now
        conn = self._conns.get(conn_id)
        if conn is None:
            return
        self._dirty[conn_id] = conn
        self._handle(conn, conn.receive_eof())

    def set_writable(self, conn_id: int, writable: bool, now: float) -> None:
        """The transport's write buffer went over (False) or back under (True) its limit."""
        self._now = now
        session = self._sessions.get(conn_id)
        if session is None:
            return
        session.unwritable = not writable
        self._pace(conn_id, session)
        if session.consumer:
            slot = self._slots[session.queue]
            slot.machine.set_writable(conn_id, writable)
            self._drain(session.queue, slot)

    def flushed(self, conn_id: int, sent: int, now: float) -> None:
        """The first ``sent`` bytes handed to ``conn_id`` (the data of its ``Send`` actions, in
        order) are written to its socket. Asked for by ``WatchFlush``; a report that covers
        less than was asked is fine, the shell reports again when it knows more.

        An original-dialect consumer's deliveries count as acknowledged from then on
        (protocol §8.3): until then a failover sends them again.
        """
        self._now = now
        session = self._sessions.get(conn_id)
        marks = None if session is None else session.flush_marks
        if session is None or not marks:
            return
        through = 0
        while marks and marks[0][0] <= sent:
            through = marks.popleft()[1]
        if through:
            slot = self._slots[session.queue]
            slot.machine.ack(conn_id, through)
            self._drain(session.queue, slot)

    def batch_written(self, now: float) -> None:
        """The outstanding ``WriteBatch`` is durable: confirm its adds, deliver its messages."""
        self._now = now
        done = self._writing
        if done is None:
            raise InvalidState("batch_written() without a WriteBatch outstanding")
        self._writing = None
        self._retry_delay = 0.0
        self.counters.batches += 1
        for name, key in done.keys:
            self._slots[name].pending_keys.pop(key, None)
        for name, messages in done.messages.items():
            slot = self._slots[name]
            slot.recent = messages
            slot.machine.appended(messages[-1].seq)
        for name, epoch in done.epochs.items():
            self._slots[name].machine.epoch_durable(epoch)
        for confirmation in done.confirmations:
            self._settle(confirmation)
            self._reply(confirmation)
        for name in dict.fromkeys([*done.messages, *done.epochs]):  # each queue once
            self._drain(name, self._slots[name])

    def batch_failed(self, reason: str, now: float) -> None:
        """The outstanding ``WriteBatch`` could not be written (it may be partly visible, never
        confirmed). Its adds, and those waiting behind it, are refused with ``unavailable``;
        a producer retries them with an idempotency key. Nothing else stops."""
        self._now = now
        failed = self._writing
        if failed is None:
            raise InvalidState("batch_failed() without a WriteBatch outstanding")
        self._writing = None
        self._retry_delay = min(RETRY_MAX, max(RETRY_FIRST, 2 * self._retry_delay))
        self._retry_at = now + self._retry_delay
        waiting, self._filling = self._filling, _Pending()
        for pending in (failed, waiting):
            for confirmation in pending.confirmations:
                self._settle(confirmation)
                self._refuse_add(confirmation, reason)
        for slot in self._slots.values():
            slot.pending_keys.clear()
            slot.next_seq = slot.machine.last_seq + 1
        # Epoch changes in the lost batches are made again so they still get persisted.
        for pending in (failed, waiting):
            for name, epoch in pending.epochs.items():
                self._filling.batch.set_epoch(name, epoch)
                self._filling.epochs[name] = epoch

    def handle_timer(self, now: float) -> None:
        """The timer set at ``next_deadline()`` fired (early or late is fine)."""
        self._now = now
        if self._exposition is not None:
            self._scrape_step()
        for name in list(self._to_pump):
            self._to_pump.discard(name)
            slot = self._slots[name]
            slot.machine.pump()
            self._drain(name, slot)
        for name in list(self._timed):
            slot = self._slots[name]
            deadline = slot.machine.next_deadline()
            if deadline is not None and deadline <= now:
                slot.machine.handle_timer(now)
                self._drain(name, slot)
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_every
            self._sweep(now)

    def next_deadline(self) -> float:
        """When the shell must call ``handle_timer`` next (monotonic seconds)."""
        if self._to_pump or self._exposition is not None:
            return self._now
        deadline = self._next_sweep
        if self._writing is None and self._filling.batch and self._retry_at < deadline:
            deadline = self._retry_at
        for name in self._timed:
            when = self._slots[name].machine.next_deadline()
            if when is not None and when < deadline:
                deadline = when
        return deadline

    def shutdown(self, now: float) -> None:
        """Stop serving: close every client with 1001; new connections get HTTP 503.

        Batches keep flowing until ``idle``; the shell exits once it is.
        """
        self._now = now
        self._shutting_down = True
        for conn in list(self._conns.values()):
            self._dirty[conn.id] = conn
            self._handle(conn, conn.close(codes.CLOSE_GOING_AWAY, "server shutting down"))

    @property
    def idle(self) -> bool:
        """No batch is being written or waiting to be: safe to exit after a shutdown."""
        return self._writing is None and not self._filling.batch

    @property
    def open_connections(self) -> int:
        """Connections the core still tracks."""
        return len(self._conns)

    def actions(self) -> list[Action]:
        """What the shell must do now, in order. Call after every other method."""
        out: list[Action] = []
        sessions = self._sessions
        for conn in self._dirty.values():
            data = conn.data_to_send()
            if data:
                out.append(Send(conn.id, data))
                session = sessions.get(conn.id)
                if session is not None:
                    session.emitted += len(data)
                    if session.unmarked:
                        self._watch(session, conn.id, out)
            if conn.transport_done:
                out.append(CloseTransport(conn.id))
                self._forget(conn)
        self._dirty.clear()
        if self._flow:
            out.extend(self._flow)
            self._flow.clear()
        if self._writing is None and self._filling.batch and self._now >= self._retry_at:
            self._writing, self._filling = self._filling, _Pending()
            out.append(WriteBatch(self._writing.batch))
        return out

    @staticmethod
    def _watch(session: _Session, conn_id: int, out: list[Action]) -> None:
        """Deliveries to an original-dialect consumer just left in ``out``: they count as acked
        once written (protocol §8.3), so ask the shell to say when that is."""
        marks = session.flush_marks
        if marks is None:
            marks = session.flush_marks = deque()
        marks.append((session.emitted, session.unmarked))
        session.unmarked = 0
        out.append(WatchFlush(conn_id))

    # -- connections ----------------------------------------------------------------------

    def _handle(self, conn: Connection, events: list[ConnectionEvent]) -> None:
        for event in events:
            if isinstance(event, MessageReceived):
                self._request(conn, event.data)
            elif isinstance(event, HttpRequest):
                self._http(conn, event)
            elif isinstance(event, UpgradeRequest):
                self._upgrade(conn, event)
            elif isinstance(event, Disconnected):
                self._disconnected(conn)

    def _http(self, conn: Connection, request: HttpRequest) -> None:
        """Plain HTTP requests (protocol §1.2)."""
        path = routes.path_of(request.target)
        if self._over_capacity(conn):
            conn.respond(503, b"too many connections\n")
        elif path in (routes.HEALTH_PATH, routes.METRICS_PATH):
            if request.method not in ("GET", "HEAD"):
                conn.respond(405, b"method not allowed\n", headers=((b"allow", b"GET"),))
            elif path == routes.HEALTH_PATH:
                conn.respond(200, b"ok\n")
            else:
                self._scrape(conn)
        elif routes.queue_for(request.target) is not None:
            conn.respond(426, b"use a WebSocket upgrade\n", headers=((b"upgrade", b"websocket"),))
        else:
            conn.respond(404, b"not found\n")

    def _scrape(self, conn: Connection) -> None:
        """``GET /metrics``: answered once the body is rendered, over the next turns; scrapes
        that arrive meanwhile share it (protocol §1.2)."""
        if len(self._scrapers) >= MAX_SCRAPES:
            conn.respond(503, b"too many scrapes at once\n")
            return
        self._scrapers.append(conn.id)
        if self._exposition is None:
            queues = [(name, slot.machine) for name, slot in self._slots.items()]
            self._exposition = Exposition(self.counters, len(self._conns), queues)

    def _scrape_step(self) -> None:
        exposition = self._exposition
        body = None if exposition is None else exposition.step(SCRAPE_STEP)
        if body is None:
            return
        self._exposition = None
        scrapers, self._scrapers = self._scrapers, []
        for conn_id in scrapers:
            conn = self._conns.get(conn_id)
            if conn is not None and conn.phase is Phase.HTTP:
                self._dirty[conn_id] = conn
                conn.respond(200, body, b"text/plain; version=0.0.4")

    def _upgrade(self, conn: Connection, request: UpgradeRequest) -> None:
        """WebSocket upgrades (protocol §1.3, §1.4)."""
        queue = routes.queue_for(request.target)
        if self._over_capacity(conn):
            conn.respond(503, b"too many connections\n")
            return
        if queue is None:
            conn.respond(404, b"no such queue path\n")
            return
        if self._authenticate is not None:
            refusal = self._authenticate(request)
            if refusal is not None:
                conn.respond(refusal.status, refusal.reason.encode() + b"\n")
                return
        self._sessions[conn.id] = _Session(queue)
        self._handle(conn, conn.accept(request))

    def _over_capacity(self, conn: Connection) -> bool:
        """Beyond --max-connections, or shutting down: answered 503 (protocol §1.2).

        Connection ids grow, so the oldest ``max_connections`` open ones are served.
        """
        if self._shutting_down:
            return True
        limit = self.config.max_connections
        return len(self._conns) > limit and conn.id > sorted(self._conns)[limit - 1]

    def _disconnected(self, conn: Connection) -> None:
        session = self._sessions.pop(conn.id, None)
        if session is not None and session.consumer:
            slot = self._slots[session.queue]
            slot.machine.leave(conn.id)
            self._drain(session.queue, slot)

    def _forget(self, conn: Connection) -> None:
        self._conns.pop(conn.id, None)
        if not conn.disconnected:
            self._handle(conn, conn.abort())

    def _sweep(self, now: float) -> None:
        """Heartbeats and timeouts for every connection (protocol §9)."""
        config = self.config
        for conn in list(self._conns.values()):
            silent = now - conn.last_seen
            if conn.phase is Phase.HTTP:
                if now - conn.opened_at >= config.handshake_timeout:
                    self._dirty[conn.id] = conn
                    self._handle(conn, conn.close(codes.CLOSE_POLICY_VIOLATION, "timeout"))
            elif overdue := conn.check_timeouts(now):  # an unfinished message (protocol §2.2)
                self._dirty[conn.id] = conn
                self._handle(conn, overdue)
            elif silent >= config.dead_after:
                self._dirty[conn.id] = conn
                self._handle(conn, conn.abort())
            elif silent >= config.heartbeat and conn.phase is Phase.OPEN:
                self._dirty[conn.id] = conn
                conn.ping()

    # -- requests -------------------------------------------------------------------------

    def _request(self, conn: Connection, frame: bytes) -> None:
        session = self._sessions.get(conn.id)
        if session is None:
            return
        command = envelope.decode(frame)
        if isinstance(command, envelope.Invalid):
            self._invalid(conn, session, command)
            return
        dialect = (
            command.dialect if isinstance(command, envelope.Add | envelope.Take) else Dialect.V1
        )
        if session.dialect is None:
            session.dialect = dialect
        elif session.dialect is not dialect:
            self._invalid(
                conn,
                session,
                envelope.Invalid(
                    codes.BAD_REQUEST,
                    "one connection speaks one dialect (protocol §8.4)",
                    None,
                    dialect,
                    codes.CLOSE_POLICY_VIOLATION,
                ),
            )
            return
        if isinstance(command, envelope.Add):
            self._add(conn.id, session, command)
            return
        slot = self._slot(session.queue)
        if isinstance(command, envelope.Take):
            session.consumer = True
            slot.machine.take(conn.id, prefetch=command.prefetch, req=command.req)
        elif isinstance(command, envelope.Ack):
            before = slot.machine.acked
            slot.machine.ack(conn.id, command.seq, req=command.req)
            if slot.machine.acked > before:
                self.counters.acks += 1
        else:
            slot.machine.handover(conn.id, self._now, req=command.req)
        self._drain(session.queue, slot)

    def _invalid(self, conn: Connection, session: _Session, invalid: envelope.Invalid) -> None:
        """A refused request: an ``error`` event in v1, a close for the original dialect (§8.4)."""
        dialect = session.dialect or invalid.dialect
        if dialect is Dialect.ORIGINAL:
            self._handle(conn, conn.close(invalid.close_code, invalid.message[:120]))
        else:
            conn.send_message(envelope.error(invalid.code, invalid.message, invalid.req))

    def _add(self, conn_id: int, session: _Session, add: envelope.Add) -> None:
        """Store a message, or answer a duplicate key (protocol §3.1, §6.8, §7.1)."""
        slot = self._slot(session.queue)
        if add.key is not None:
            in_flight = slot.pending_keys.get(add.key)
            if in_flight is not None:
                earlier, holder = in_flight
                self.counters.duplicates += 1
                confirmation = _Confirmation(conn_id, add.req, earlier, True, add.dialect)
                self._await(session, confirmation, holder)
                return
            seq = self._store.lookup_key(session.queue, add.key)
            stored = None if seq is None else self._store.get(session.queue, seq)
            if stored is not None:
                self.counters.duplicates += 1
                self._reply(_Confirmation(conn_id, add.req, stored, True, add.dialect))
                return
        message = StoredMessage(slot.next_seq, self._new_id(), self._clock_ms(), add.data)
        slot.next_seq += 1
        pending = self._filling
        pending.batch.add_message(session.queue, message, add.key)
        pending.messages.setdefault(session.queue, []).append(message)
        if add.key is not None:
            slot.pending_keys[add.key] = (message, pending)
            pending.keys.append((session.queue, add.key))
        self.counters.adds += 1
        self._await(session, _Confirmation(conn_id, add.req, message, False, add.dialect), pending)

    def _await(self, session: _Session, confirmation: _Confirmation, holder: _Pending) -> None:
        """Hold a confirmation until ``holder`` is durable; push back on a flooding producer."""
        holder.confirmations.append(confirmation)
        session.unconfirmed += 1
        session.unconfirmed_bytes += len(confirmation.message.data)
        self._pace(confirmation.conn, session)

    def _pace(self, conn_id: int, session: _Session) -> None:
        """Backpressure on a producer (protocol §7.1): pause reading it while its unconfirmed
        adds pile up (in number or in bytes) or while it does not read its confirmations;
        resume below half the limits. This is what bounds the server's memory per producer.

        Any connection, consumer or not, is paused while its transport does not take what we
        send: a peer that sends pings, bad requests or acks and never reads must not grow our
        buffers (protocol §7.1). A consumer's acks flow again as soon as it reads."""
        config = self.config
        stuck = session.unwritable
        if not session.reading_paused:
            if (
                stuck
                or session.unconfirmed >= config.max_pending_adds
                or session.unconfirmed_bytes >= config.max_pending_bytes
            ):
                session.reading_paused = True
                self._flow.append(PauseReading(conn_id))
        elif (
            not stuck
            and session.unconfirmed < config.max_pending_adds // 2
            and session.unconfirmed_bytes < config.max_pending_bytes // 2
        ):
            session.reading_paused = False
            self._flow.append(ResumeReading(conn_id))

    def _settle(self, confirmation: _Confirmation) -> None:
        """An awaited add is decided: the producer may have read again."""
        session = self._sessions.get(confirmation.conn)
        if session is None:
            return
        session.unconfirmed -= 1
        session.unconfirmed_bytes -= len(confirmation.message.data)
        self._pace(confirmation.conn, session)

    def _reply(self, confirmation: _Confirmation) -> None:
        """Tell a v1 producer its add is durable (protocol §4.1)."""
        conn = self._conns.get(confirmation.conn)
        if conn is None or confirmation.conn not in self._sessions:
            return
        if confirmation.dialect is Dialect.ORIGINAL:
            return  # an original client hears nothing back (protocol §8.4)
        message = confirmation.message
        self._dirty[conn.id] = conn
        conn.send_message(
            envelope.added(
                message.seq,
                message.id,
                message.created_at,
                duplicate=confirmation.duplicate,
                req=confirmation.req,
            )
        )

    def _refuse_add(self, confirmation: _Confirmation, reason: str) -> None:
        conn = self._conns.get(confirmation.conn)
        if conn is None or confirmation.conn not in self._sessions:
            return
        self._dirty[conn.id] = conn
        if confirmation.dialect is Dialect.ORIGINAL:
            self._handle(conn, conn.close(codes.CLOSE_INTERNAL_ERROR, "store failed"))
        else:
            conn.send_message(
                envelope.error(
                    codes.UNAVAILABLE,
                    f"write failed, maybe not stored (retry with a key): {reason}",
                    confirmation.req,
                )
            )

    # -- queues ---------------------------------------------------------------------------

    def _new_slot(self, name: str, *, last_seq: int = 0, acked: int = 0, epoch: int = 0) -> _Slot:
        machine = failover.Queue(
            name,
            last_seq=last_seq,
            acked=acked,
            epoch=epoch,
            handover_timeout=self.config.handover_timeout,
            window=_window_for(self.config.max_message_bytes),
        )
        return _Slot(machine, next_seq=last_seq + 1)

    def _slot(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is None:
            slot = self._slots[name] = self._new_slot(name)
        return slot

    def _drain(self, name: str, slot: _Slot) -> None:
        """Carry out what a queue's state machine decided."""
        for output in slot.machine.outputs():
            if isinstance(output, failover.Deliver):
                self._deliver(name, slot, output)
            elif isinstance(output, failover.PersistCursor):
                self._filling.batch.set_cursor(name, output.acked)
            elif isinstance(output, failover.PersistEpoch):
                self._filling.batch.set_epoch(name, output.epoch)
                self._filling.epochs[name] = output.epoch
            else:
                self._announce(output)
        if slot.machine.wants_pump:
            self._to_pump.add(name)
        if slot.machine.next_deadline() is None:
            self._timed.discard(name)
        else:
            self._timed.add(name)

    def _announce(
        self,
        output: failover.Subscribed | failover.Promoted | failover.Demoted | failover.Refused,
    ) -> None:
        conn = self._conns.get(output.consumer)
        session = self._sessions.get(output.consumer)
        if conn is None or session is None:
            return
        self._dirty[conn.id] = conn
        if session.dialect is Dialect.ORIGINAL:
            if isinstance(output, failover.Refused):
                self._handle(conn, conn.close(codes.CLOSE_POLICY_VIOLATION, output.message[:120]))
            return  # an original client hears only its deliveries (protocol §8.4)
        if isinstance(output, failover.Subscribed):
            payload = envelope.subscribed(output.role, output.epoch, output.req)
        elif isinstance(output, failover.Promoted):
            self.counters.failovers += 1
            payload = envelope.active(output.epoch)
        elif isinstance(output, failover.Demoted):
            self.counters.handovers += 1
            payload = envelope.standby(output.epoch)
        else:
            payload = envelope.error(output.code, output.message, output.req)
        conn.send_message(payload)

    def _deliver(self, name: str, slot: _Slot, deliver: failover.Deliver) -> None:
        conn = self._conns.get(deliver.consumer)
        session = self._sessions.get(deliver.consumer)
        if conn is None or session is None:
            return
        self._dirty[conn.id] = conn
        original = session.dialect is Dialect.ORIGINAL
        counters = self.counters
        messages = self._messages(name, slot, deliver.first, deliver.last)
        size = sum(len(message.data) for message in messages)
        slot.machine.window = _window_for(size // len(messages))
        if original:
            session.unmarked = deliver.last
        for message in messages:
            if original:
                conn.send_message(envelope.original_message(message))
            else:
                redelivered = message.seq <= deliver.redelivered_through
                if redelivered:
                    counters.redeliveries += 1
                conn.send_message(envelope.message(message, redelivered))
            counters.deliveries += 1

    def _messages(self, name: str, slot: _Slot, first: int, last: int) -> list[StoredMessage]:
        """Messages ``first``..``last``: from the last durable batch if it has them all, else
        read from the store in windows (a backlog is never loaded whole, protocol §7.3)."""
        recent = slot.recent
        if recent and recent[0].seq <= first and last <= recent[-1].seq:
            offset = recent[0].seq
            return recent[first - offset : last - offset + 1]
        found: list[StoredMessage] = []
        seq = first
        while seq <= last:
            window = self._store.read(name, seq, min(READ_WINDOW, last - seq + 1))
            if not window:
                raise InvalidState(f"queue {name!r} lost message {seq} from the store")
            found.extend(window)
            seq = window[-1].seq + 1
        return found


def _window_for(message_bytes: int) -> int:
    """How many messages of about ``message_bytes`` one pump may send (``PUMP_BYTES``)."""
    return max(MIN_WINDOW, min(MAX_WINDOW, PUMP_BYTES // max(1, message_bytes + 64)))
