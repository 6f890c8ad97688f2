"""The facade both shells drive: every connection, every queue, no I/O.

A shell owns sockets, threads or tasks, one timer and a store; it calls these methods and then
carries out ``actions()``:

===========================================  ==============================================
shell event                                  call
===========================================  ==============================================
a TCP+TLS connection is established          ``conn = server.connect(now, address, subject)``
bytes arrived on it                          ``server.receive_data(conn, data, now)``
the peer closed it, or it broke              ``server.receive_eof(conn, now)``
its write buffer filled / drained            ``server.set_writable(conn, False/True, now)``
``sent`` bytes of it are written (watched)   ``server.flushed(conn, sent, now)``
the timer fired                              ``server.handle_timer(now)``
a ``WriteBatch`` is durable / failed         ``server.batch_written(now)`` / ``batch_failed()``
a ``ReadMessages``/``FindKey`` is answered   ``server.read_done(ticket, messages, now)`` /
                                             ``read_failed(ticket, reason, now)``
SIGHUP re-read the ``--auth`` file            ``server.set_access(policy, now)``
SIGTERM or SIGINT                            ``server.shutdown(now)``
===========================================  ==============================================

In cluster mode (``Config.cluster``, protocol §10) the host also answers ``Locate`` with
``adopt`` / ``located`` / ``locate_failed`` and ``ClusterStatus`` with ``cluster_status``,
reports each renewal of the node's lease with ``renewed`` and its loss with ``lease_lost``,
and a write the database fenced off with ``release``; it carries out ``Relay`` by piping the
connection to the node that serves its queue.

After **every** call the shell must drain ``actions()`` (``actions.py``) and re-arm its single
timer at ``next_deadline()``. ``now`` is a monotonic clock in seconds; message ids and
timestamps come from the ``new_id`` and ``clock_ms`` callables the shell passes in, so the core
itself reads no clock and makes no randomness. The store is the shell's: the core starts from
the ``QueueRecord``\\ s it recovered and asks for every write and read as an action.

The parts, each owning its state (``docs/architecture.md``): ``front.FrontDoor`` answers plain
HTTP and admits upgrades, deciding who may do what (``access``, protocol §11);
``appends.Appends`` numbers and confirms adds; ``deliveries.Deliveries`` runs every queue's
consumer line; ``journal.Journal`` batches the writes. This facade keeps the
connections, routes requests to the parts, and is the one path that queues bytes for a
connection (``_say``). It checks each command against what its connection may do, one set
lookup cached per connection (protocol §11.5).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from . import access, codes, envelope
from .access import NOTHING, AccessPolicy, Audit, Caller, Denial
from .actions import (
    Action,
    CloseTransport,
    PauseReading,
    Relay,
    ResumeReading,
    Send,
    WatchFlush,
    WriteBatch,
)
from .appends import Appends
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
from .deliveries import Deliveries
from .envelope import Dialect
from .exceptions import InvalidState
from .frames import Unmasker
from .front import Admit, Authenticator, FrontDoor, Hold, Refusal, Remote, Reply
from .journal import Journal
from .metrics import Counters
from .placement import Placement, Waiting, relayed
from .records import Req, StoredMessage
from .storage import QueueRecord
from .voices import ORIGINAL, Answer, Frames, Hangup, Speech, Voice, voice_of

#: The reason a connection hears when its queue moves to another node (protocol §10.4).
MOVED: Final = "queue moved to another node; reconnect"

__all__ = ["Authenticator", "Refusal", "Server"]

#: The action each command needs (protocol §11.2).
_NEEDS: dict[type, access.Action] = {
    envelope.Add: "produce",
    envelope.Take: "consume",
    envelope.Ack: "consume",
    envelope.Handover: "consume",
}
#: Where a connection comes from when the shell did not say, or it does not matter.
_NOWHERE = Remote("")


@dataclass(slots=True)
class _Session:
    """What the server knows of an upgraded connection."""

    queue: str
    #: What it may do on ``queue`` (protocol §11.5): one of ``access``'s shared sets.
    allowed: frozenset[access.Action]
    #: Who it is, with ``--auth``: to find it again under a new policy (``set_access``).
    caller: Caller | None = None
    #: How to speak to it: set by its first request (one connection, one dialect, §8.4).
    voice: Voice | None = None
    consumer: bool = False
    #: It has added a message: it uses ``produce`` (``set_access``).
    producer: bool = False
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


class Server:
    """The whole broker as a state machine; see the module docstring for how to drive it."""

    def __init__(
        self,
        config: Config,
        records: Iterable[QueueRecord],
        *,
        new_id: Callable[[], bytes],
        clock_ms: Callable[[], int],
        now: float,
        access: AccessPolicy | None = None,
        audit: Audit | None = None,
        authenticate: Authenticator | None = None,
        unmasker: Unmasker | None = None,
    ) -> None:
        """``access``: the ``--auth`` policy (None: anyone may do anything); ``audit`` is
        called with each refusal by access control, for the shell to log (protocol §11.6)."""
        self.config = config
        self._unmasker = unmasker
        self.counters = counters = Counters()
        self._now = now
        records = list(records)
        tickets = itertools.count(1).__next__
        self._journal = journal = Journal(now)

        self._appends = Appends(
            journal,
            counters,
            records,
            new_id=new_id,
            clock_ms=clock_ms,
            tickets=tickets,
            max_pending_adds=config.max_pending_adds,
            max_pending_bytes=config.budget.pending_bytes,
        )
        self._deliveries = Deliveries(
            journal,
            counters,
            records,
            handover_timeout=config.handover_timeout,
            max_message_bytes=config.max_message_bytes,
            pump_bytes=config.budget.pump_bytes,
            read_bytes=config.budget.read_bytes,
            tickets=tickets,
        )
        self._placement = Placement(config.clustered)
        self._front = FrontDoor(
            counters,
            self._deliveries.states,
            access=access,
            origins=config.allow_origins,
            audit=audit,
            authenticate=authenticate,
            clustered=config.clustered,
            tickets=tickets,
        )
        #: Where each connection comes from, kept only when access control needs it.
        self._remotes: dict[int, Remote] = {}
        self._keep_remotes = access is not None or bool(config.allow_origins)
        self._collecting = False
        self._next_conn = 1
        self._conns: dict[int, Connection] = {}
        self._sessions: dict[int, _Session] = {}
        #: Connections that may have bytes to send or a transport to close.
        self._dirty: dict[int, Connection] = {}
        #: Actions other than sends and closes, in order.
        self._flow: list[Action] = []
        #: Connections handed to the shell by ``Relay`` and not yet reported ended: they
        #: count against --max-connections (protocol §10.3).
        self._relayed: set[int] = set()
        #: The tickets of ``FindKey`` lookups out (the other tickets are deliveries' reads).
        self._finding: set[int] = set()
        #: Heartbeats and handshake timeouts are checked this often (protocol §9).
        self._sweep_every = min(config.heartbeat, config.handshake_timeout) / 4
        self._next_sweep = now + self._sweep_every

    # -- the shell's verbs ---------------------------------------------------------------

    def connect(self, now: float, address: str = "", subject: str | None = None) -> int:
        """A new transport is up; returns its connection id for the other calls.

        ``address`` is the peer's IP address (no port) and ``subject`` the subject of the
        client certificate the TLS layer verified, if one was presented, in
        ``jackrabbit_host.subjects`` form (protocol §11.3).
        """
        self._now = now
        conn_id = self._next_conn
        self._next_conn += 1
        if self._keep_remotes:
            self._remotes[conn_id] = Remote(address, subject)
        self._conns[conn_id] = Connection(
            conn_id, now, max_message_bytes=self.config.max_message_bytes, unmasker=self._unmasker
        )
        self.counters.connections += 1
        return conn_id

    def receive_data(self, conn_id: int, data: bytes, now: float) -> None:
        """Bytes from the peer of ``conn_id``. Ignored if the core already closed it."""
        self._now = now
        self._check_lease(now)
        conn = self._conns.get(conn_id)
        if conn is None:
            return
        self._dirty[conn_id] = conn
        self._handle(conn, conn.receive_data(data, now))

    def receive_eof(self, conn_id: int, now: float) -> None:
        """The transport of ``conn_id`` ended (closed, reset or failed), or its relay did."""
        self._now = now
        self._relayed.discard(conn_id)
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
            self._deliveries.set_writable(conn_id, session.queue, writable)
            self._collect()

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
            self._deliveries.written(conn_id, session.queue, through)
            self._collect()

    def batch_written(self, now: float) -> None:
        """The outstanding ``WriteBatch`` is durable: confirm its adds, deliver its messages."""
        self._now = now
        self._check_lease(now)
        self.counters.batches += 1
        durable = self._journal.written()
        self._appends.written(durable)
        self._collect()
        self._deliveries.durable(durable)
        self._collect()
        self._placement.drained(self._journal.drained())

    def batch_failed(self, reason: str, now: float) -> None:
        """The outstanding ``WriteBatch`` could not be written (it may be partly visible, never
        confirmed). Its adds, and those waiting behind it, are refused with ``unavailable``;
        a producer retries them with an idempotency key. Nothing else stops; the next write
        waits a little longer after each failure (protocol §7.1)."""
        self._now = now
        self._appends.failed(self._journal.failed(now), reason)
        self._collect()
        self._placement.drained(self._journal.drained())

    def read_done(self, ticket: int, messages: list[StoredMessage], now: float) -> None:
        """The store answered ``ReadMessages`` or ``FindKey`` ``ticket`` (a key: the message
        stored under it, or none)."""
        self._now = now
        self._check_lease(now)
        if ticket in self._finding:
            self._finding.discard(ticket)
            self._appends.found(ticket, messages[0] if messages else None)
        else:
            self._deliveries.read_done(ticket, messages)
        self._collect()

    def read_failed(self, ticket: int, reason: str, now: float) -> None:
        """``ReadMessages`` or ``FindKey`` ``ticket`` failed. A key lookup's add is refused as
        ``unavailable``; a delivery's consumer is closed with 1011, so its line fails over."""
        self._now = now
        if ticket in self._finding:
            self._finding.discard(ticket)
            self._appends.lookup_failed(ticket, reason)
        else:
            self._deliveries.read_failed(ticket, reason)
        self._collect()

    # -- cluster mode (protocol §10) ----------------------------------------------------------

    def adopt(self, record: QueueRecord, lease_until: float, now: float) -> None:
        """Answers ``Locate``: this node took ``record.name``'s lease and serves the queue from
        ``record`` (read in the transaction that took it) until it releases it; the lease runs
        until ``lease_until`` (monotonic seconds) unless renewed. The upgrades that waited are
        accepted."""
        self._now = now
        if self._placement.serves(record.name):
            raise InvalidState(f"adopt() of queue {record.name!r}, which is served here already")
        waiting = self._placement.adopted(record.name, lease_until)
        self._appends.adopt(record)
        self._deliveries.adopt(record)
        for entry in waiting:
            conn = self._conns.get(entry.conn)
            if conn is not None and conn.phase is Phase.HTTP:
                self._accept(conn, entry, record.name)

    def located(self, queue: str, node: str, address: str, now: float) -> None:
        """Answers ``Locate``: node ``node`` serves ``queue`` at ``address``. The upgrades
        that waited are relayed there; one that was relayed here already is refused (503),
        so a relay never relays again, and its client retries."""
        self._now = now
        for entry in self._placement.answered(queue):
            conn = self._conns.get(entry.conn)
            if conn is None or conn.phase is not Phase.HTTP:
                continue
            if relayed(entry.request):
                self._reply(conn, _UNAVAILABLE)
                continue
            early = conn.detach()
            del self._conns[conn.id]
            self._remotes.pop(conn.id, None)
            self._dirty.pop(conn.id, None)
            self.counters.relayed += 1
            self._relayed.add(conn.id)
            self._flow.append(Relay(conn.id, node, address, entry.request, early))

    def locate_failed(self, queue: str, reason: str, now: float) -> None:
        """Answers ``Locate``: nobody could be found to serve ``queue``; the upgrades that
        waited are refused (503) and their clients retry."""
        self._now = now
        for entry in self._placement.answered(queue):
            conn = self._conns.get(entry.conn)
            if conn is not None and conn.phase is Phase.HTTP:
                self._reply(conn, _UNAVAILABLE)

    def renewed(self, lease_until: float, now: float) -> None:
        """The host renewed this node's lease: it runs until ``lease_until`` now."""
        self._now = now
        self._placement.renewed(lease_until)

    def lease_lost(self, reason: str, now: float) -> None:
        """The host found this node's lease over: every queue is released."""
        self._now = now
        self._release(set(self._placement.served), reason)

    def release(self, queue: str, reason: str, now: float) -> None:
        """Stop serving ``queue`` (the database fenced off a write for it: another node took
        it). Its connections are closed with 1012 and ``reason``; clients reconnect."""
        self._now = now
        self._release({queue}, reason)

    def cluster_status(self, ticket: int, body: bytes | None, now: float) -> None:
        """Answers ``ClusterStatus``: the JSON ``body`` for ``GET /api/cluster`` (None: the
        host could not tell; the requests get 503)."""
        self._now = now
        conns, reply = self._front.answered(ticket, body)
        for conn_id in conns:
            conn = self._conns.get(conn_id)
            if conn is not None and conn.phase is Phase.HTTP:
                self._reply(conn, reply)

    def handle_timer(self, now: float) -> None:
        """The timer set at ``next_deadline()`` fired (early or late is fine)."""
        self._now = now
        self._check_lease(now)
        for conn_id, request, _ in self._front.release(now):
            conn = self._conns.get(conn_id)
            if conn is None or conn.phase is not Phase.HTTP:
                continue  # it went away, or timed out, while held
            self._dirty[conn_id] = conn
            if isinstance(request, UpgradeRequest):
                self._upgrade(conn, request, released=True)
            else:
                self._http(conn, request, released=True)
        if self._front.busy:
            done = self._front.step()
            if done is not None:
                scrapers, reply = done
                for conn_id in scrapers:
                    conn = self._conns.get(conn_id)
                    if conn is not None and conn.phase is Phase.HTTP:
                        self._reply(conn, reply)
        self._deliveries.handle_timer(now)
        self._collect()
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_every
            self._sweep(now)

    def next_deadline(self) -> float:
        """When the shell must call ``handle_timer`` next (monotonic seconds)."""
        if self._front.busy:
            return self._now
        deadline = self._next_sweep
        for when in (
            self._deliveries.next_deadline(self._now),
            self._journal.deadline(),
            self._front.deadline(),
            self._placement.deadline(),
        ):
            if when is not None and when < deadline:
                deadline = when
        return deadline

    def shutdown(self, now: float) -> None:
        """Stop serving: close every client with 1001; new connections get HTTP 503.

        Batches keep flowing until ``idle``; the shell exits once it is.
        """
        self._now = now
        self._front.shutting_down = True
        self._journal.hurry()
        for conn in list(self._conns.values()):
            self._dirty[conn.id] = conn
            self._handle(conn, conn.close(codes.CLOSE_GOING_AWAY, "server shutting down"))

    def set_access(self, policy: AccessPolicy, now: float) -> None:
        """Judge by ``policy`` from now on (the shell re-read the ``--auth`` file on SIGHUP,
        protocol §11.9). New requests are decided by it; each open connection is judged again
        by the credentials it was admitted with: one that lost an action it has used (it
        added, or it took), or every action on its queue, is closed with 1008
        ``access revoked``; the others carry on with what the new policy allows them.

        Only for a server started with a policy (``InvalidState`` otherwise).
        """
        self._now = now
        front = self._front
        if front.access is None:
            raise InvalidState("set_access() needs a server started with an access policy")
        front.access = policy
        for conn_id, session in list(self._sessions.items()):
            remote = self._remotes.get(conn_id, _NOWHERE)
            token = None if session.caller is None else session.caller.token
            caller = policy.recognize(token, remote.subject)
            allowed = NOTHING if caller is None else caller.actions_on(session.queue)
            if (
                not allowed
                or (session.producer and "produce" not in allowed)
                or (session.consumer and "consume" not in allowed)
            ):
                who = None if session.caller is None else session.caller.name
                front.denied(
                    Denial("revoked", remote.address, who, session.queue, "access revoked")
                )
                self._say(conn_id, Hangup(codes.CLOSE_POLICY_VIOLATION, "access revoked"))
            else:
                session.allowed, session.caller = allowed, caller
        self._collect()

    @property
    def idle(self) -> bool:
        """No batch is being written or waiting to be: safe to exit after a shutdown."""
        return self._journal.idle

    @property
    def open_connections(self) -> int:
        """Connections the core still tracks, relayed ones included."""
        return len(self._conns) + len(self._relayed)

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
                        _watch(session, conn.id, out)
            if conn.transport_done:
                out.append(CloseTransport(conn.id))
                self._forget(conn)
        self._dirty.clear()
        flow = self._flow
        flow += self._placement.outputs()
        flow += self._front.outputs()
        if flow:
            out.extend(flow)
            flow.clear()
        batch = self._journal.next_batch(self._now)
        if batch is not None:
            out.append(WriteBatch(batch))
        return out

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

    def _http(self, conn: Connection, request: HttpRequest, *, released: bool = False) -> None:
        """Plain HTTP requests (protocol §1.2, §11.4)."""
        reply = self._front.request(
            conn.id,
            request,
            self._over_capacity(conn),
            len(self._conns),
            self._remotes.get(conn.id, _NOWHERE),
            self._now,
            released=released,
        )
        if isinstance(reply, Reply):
            self._reply(conn, reply)

    def _upgrade(
        self, conn: Connection, request: UpgradeRequest, *, released: bool = False
    ) -> None:
        """WebSocket upgrades (protocol §1.3, §11.4); in a cluster, where the queue is served
        decides what follows (§10.2)."""
        decision = self._front.upgrade(
            conn.id,
            request,
            self._over_capacity(conn),
            self._remotes.get(conn.id, _NOWHERE),
            self._now,
            released=released,
        )
        if isinstance(decision, Hold):
            return
        if not isinstance(decision, Admit):
            self._reply(conn, decision)
            return
        entry = Waiting(conn.id, request, decision.subprotocol, decision.allowed, decision.caller)
        if self._placement.serves(decision.queue):
            self._accept(conn, entry, decision.queue)
        else:
            self._placement.wait(entry, decision.queue)  # protocol §10.2

    def _accept(self, conn: Connection, entry: Waiting, queue: str) -> None:
        self._dirty[conn.id] = conn
        self._sessions[conn.id] = _Session(queue, entry.allowed, entry.caller)
        self._handle(conn, conn.accept(entry.request, entry.subprotocol))

    def _check_lease(self, now: float) -> None:
        """Release every queue once the lease's deadline has passed (protocol §10.4), checked
        before any input is acted on: a node that wakes from a pause releases first, even when
        its timer fires after the bytes that waited meanwhile are read."""
        expired = self._placement.expired(now)
        if expired:
            self._release(expired, "lease expired; " + MOVED)

    def _release(self, queues: set[str], reason: str) -> None:
        """Stop serving ``queues`` (protocol §10.4): forget their state first, so closing their
        connections promotes nobody and writes nothing, then close those connections."""
        draining = self._journal.forget(queues)
        released = self._placement.release(queues, draining)
        if not released:
            return
        self._appends.release(released)
        self._deliveries.release(released)
        hangup = Hangup(codes.CLOSE_SERVICE_RESTART, reason[:120])
        for conn_id, session in list(self._sessions.items()):
            if session.queue in released:
                self._say(conn_id, hangup)
        self._collect()

    def _reply(self, conn: Connection, reply: Reply) -> None:
        """Answer ``conn``'s plain HTTP request (it is then closed)."""
        self._dirty[conn.id] = conn
        conn.respond(reply.status, reply.body, reply.content_type, reply.headers)

    def _over_capacity(self, conn: Connection) -> bool:
        """Beyond --max-connections: answered 503 (protocol §1.2).

        Connection ids grow, so the oldest ``max_connections`` open ones are served.
        """
        limit = self.config.max_connections - len(self._relayed)  # relays count (§10.3)
        if len(self._conns) <= limit:
            return False
        return limit <= 0 or conn.id > sorted(self._conns)[limit - 1]

    def _disconnected(self, conn: Connection) -> None:
        session = self._sessions.pop(conn.id, None)
        if session is None:
            return
        self._appends.forget(conn.id)
        if session.consumer:
            self._deliveries.leave(conn.id, session.queue)
            self._collect()

    def _forget(self, conn: Connection) -> None:
        self._conns.pop(conn.id, None)
        self._remotes.pop(conn.id, None)
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
        """One request of an upgraded connection (protocol §3, §8.1), routed to its part."""
        session = self._sessions.get(conn.id)
        if session is None:
            return
        command = envelope.decode(frame)
        if isinstance(command, envelope.Invalid):
            voice = session.voice or voice_of(command.dialect or Dialect.V1)
            self._say(
                conn.id,
                voice.refused(command.code, command.message, command.req, command.close_code),
            )
            return
        dialect = (
            command.dialect if isinstance(command, envelope.Add | envelope.Take) else Dialect.V1
        )
        voice = session.voice or voice_of(dialect)
        session.voice = voice
        if voice.dialect is not dialect:
            message = "one connection speaks one dialect (protocol §8.4)"
            speech = voice.refused(codes.BAD_REQUEST, message, None, codes.CLOSE_POLICY_VIOLATION)
            self._say(conn.id, speech)
            return
        queue = session.queue
        needed = _NEEDS[type(command)]
        if needed not in session.allowed:
            self._forbidden(conn.id, session, voice, needed, command.req)
            return
        if isinstance(command, envelope.Add):
            session.producer = True
            self._appends.add(conn.id, queue, command, voice)
            self._pace(conn.id, session)
        elif isinstance(command, envelope.Take):
            session.consumer = True
            self._deliveries.take(conn.id, queue, command.prefetch, command.req, voice)
        elif isinstance(command, envelope.Ack):
            self._deliveries.ack(conn.id, queue, command.seq, command.req, voice)
        else:
            self._deliveries.handover(conn.id, queue, command.req, voice, self._now)
        self._collect()

    def _forbidden(
        self, conn_id: int, session: _Session, voice: Voice, needed: access.Action, req: Req
    ) -> None:
        """A command whose action the connection lacks (protocol §11.5): a v1 ``forbidden``
        error, the connection stays open; an original client is closed with 1008."""
        message = f"{needed} is not allowed on queue {session.queue}"
        remote = self._remotes.get(conn_id, _NOWHERE)
        who = None if session.caller is None else session.caller.name
        self._front.denied(Denial("forbidden", remote.address, who, session.queue, message))
        self._say(
            conn_id,
            voice.refused(codes.FORBIDDEN, message, req, codes.CLOSE_POLICY_VIOLATION),
        )

    def _collect(self) -> None:
        """Carry out what the parts decided, in order: speech and frames to connections,
        reads to ask the store for; re-pace the producers whose answers went out. A close
        among them can make the parts decide more (a failover): that is carried out too."""
        if self._collecting:
            return  # the call below us goes round again
        self._collecting = True
        appends, deliveries = self._appends, self._deliveries
        try:
            while True:
                answers, decided = appends.outputs(), deliveries.outputs()
                if not answers and not decided:
                    return
                for output in answers:
                    if isinstance(output, Answer):
                        self._say(output.conn, output.speech)
                        session = self._sessions.get(output.conn)
                        if session is not None:
                            self._pace(output.conn, session)
                    else:
                        self._finding.add(output.ticket)
                        self._flow.append(output)
                for delivery in decided:
                    if isinstance(delivery, Frames):
                        self._frames(delivery)
                    elif isinstance(delivery, Answer):
                        self._say(delivery.conn, delivery.speech)
                    else:
                        self._flow.append(delivery)
        finally:
            self._collecting = False

    def _say(self, conn_id: int, speech: Speech) -> None:
        """The one way the server speaks to an upgraded connection: a frame, or a close."""
        if speech is None:
            return
        conn = self._conns.get(conn_id)
        if conn is None or conn_id not in self._sessions:
            return
        self._dirty[conn_id] = conn
        if isinstance(speech, Hangup):
            self._handle(conn, conn.close(speech.code, speech.reason))
        else:
            conn.send_message(speech)

    def _frames(self, frames: Frames) -> None:
        """Deliveries: frames like any other speech; an original consumer's are watched until
        written, when they count as acknowledged (protocol §8.3)."""
        conn = self._conns.get(frames.conn)
        session = self._sessions.get(frames.conn)
        if conn is None or session is None:
            return
        self._dirty[frames.conn] = conn
        send = conn.send_message
        for payload in frames.payloads:
            send(payload)
        if session.voice is ORIGINAL:
            session.unmarked = frames.through

    def _pace(self, conn_id: int, session: _Session) -> None:
        """Backpressure (protocol §7.1): stop reading a connection while its transport does
        not take what we send (whatever it sends itself: pings, bad requests, acks) or while
        it has too many unconfirmed adds; read it again once both have eased."""
        stuck = session.unwritable or self._appends.flooding(conn_id)
        if not session.reading_paused:
            if stuck:
                session.reading_paused = True
                self._flow.append(PauseReading(conn_id))
        elif not session.unwritable and self._appends.calm(conn_id):
            session.reading_paused = False
            self._flow.append(ResumeReading(conn_id))


#: The answer to an upgrade whose queue cannot be served now (protocol §10.2).
_UNAVAILABLE: Final = Reply(
    503, b"queue not available on this node now; retry\n", headers=((b"retry-after", b"1"),)
)


def _watch(session: _Session, conn_id: int, out: list[Action]) -> None:
    """Deliveries to an original-dialect consumer just left in ``out``: they count as acked
    once written (protocol §8.3), so ask the shell to say when that is."""
    marks = session.flush_marks
    if marks is None:
        marks = session.flush_marks = deque()
    marks.append((session.emitted, session.unmarked))
    session.unmarked = 0
    out.append(WatchFlush(conn_id))

