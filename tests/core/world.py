"""Drive a core ``Server`` against in-memory client peers: no sockets, a fake clock, and an
in-memory store that implements the core's ``Store`` interface. The shell's job is done by
hand here, step by step, so a test can hold a batch or a read back (to see that nothing is
confirmed before it is durable, or delivered before it is read) or tick time."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import msgpack

from jackrabbit_core import (
    CloseTransport,
    ClusterStatus,
    Config,
    FindKey,
    Locate,
    PauseReading,
    ReadMessages,
    Relay,
    ResumeReading,
    Send,
    Server,
    StoreError,
    WatchFlush,
    WriteBatch,
)
from jackrabbit_core.access import AccessPolicy, Audit
from jackrabbit_core.client import ClientEvent, ClientProtocol
from jackrabbit_core.storage import Batch

from .memstore import MemoryStore


@dataclass
class Peer:
    """One client: our sans-I/O client protocol, or raw bytes for malformed input."""

    conn: int
    protocol: ClientProtocol
    events: list[ClientEvent] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)
    closed_by_server: bool = False
    paused: bool = False


class World:
    """A server, its store and its peers, advanced explicitly."""

    def __init__(
        self,
        store: MemoryStore | None = None,
        *,
        auto_write: bool = True,
        auto_flush: bool = True,
        auto_read: bool = True,
        access: AccessPolicy | None = None,
        audit: Audit | None = None,
        **config: Any,
    ) -> None:
        self.config = Config(**config)
        self.store = MemoryStore() if store is None else store
        self.now = 1000.0
        self._ids = itertools.count(1)
        self._ms = itertools.count(1_700_000_000_000)
        self.server = Server(
            self.config,
            self.store.recover(),
            new_id=lambda: next(self._ids).to_bytes(16, "big"),
            clock_ms=lambda: next(self._ms),
            now=self.now,
            access=access,
            audit=audit,
        )
        self.peers: dict[int, Peer] = {}
        self.auto_write = auto_write
        self.held: list[Batch] = []
        #: Answer reads at once; else collect them here for ``answer_reads``.
        self.auto_read = auto_read
        self.reads: list[ReadMessages | FindKey] = []
        #: Report every ``WatchFlush`` at once, all bytes written; else collect them here.
        self.auto_flush = auto_flush
        self.watched: set[int] = set()
        #: What the server asked of a cluster host (cluster mode), in order.
        self.asked: list[Locate | Relay | ClusterStatus] = []

    def close(self) -> None:
        self.store.close()

    # -- the shell's work -----------------------------------------------------------------

    def run(self) -> None:
        """Carry out actions until the server has nothing more to say."""
        while True:
            actions = self.server.actions()
            if not actions:
                return
            for action in actions:
                if isinstance(action, Send):
                    peer = self.peers.get(action.conn)
                    if peer is not None:
                        peer.raw += action.data
                        peer.protocol.receive_data(action.data)
                        peer.events += peer.protocol.events_received()
                elif isinstance(action, CloseTransport):
                    peer = self.peers.get(action.conn)
                    if peer is not None:
                        peer.closed_by_server = True
                elif isinstance(action, PauseReading | ResumeReading):
                    peer = self.peers.get(action.conn)
                    if peer is not None:
                        peer.paused = isinstance(action, PauseReading)
                elif isinstance(action, WatchFlush):
                    peer = self.peers.get(action.conn)
                    if peer is not None and self.auto_flush:
                        self.server.flushed(peer.conn, len(peer.raw), self.now)
                    elif peer is not None:
                        self.watched.add(peer.conn)
                elif isinstance(action, ReadMessages | FindKey):
                    if self.auto_read:
                        self._answer(action)
                    else:
                        self.reads.append(action)
                elif isinstance(action, Locate | Relay | ClusterStatus):
                    self.asked.append(action)
                elif isinstance(action, WriteBatch):
                    if self.auto_write:
                        self.store.write(action.batch)
                        self.server.batch_written(self.now)
                    else:
                        self.held.append(action.batch)

    def report_flushed(self, peer: Peer, sent: int | None = None) -> None:
        """The shell says ``sent`` bytes (default: all so far) reached ``peer``'s socket."""
        self.watched.discard(peer.conn)
        self.server.flushed(peer.conn, len(peer.raw) if sent is None else sent, self.now)
        self.run()

    def _answer(self, read: ReadMessages | FindKey) -> None:
        try:
            if isinstance(read, ReadMessages):
                found = self.store.read(read.queue, read.first, read.limit, read.max_bytes)
            else:
                message = self.store.find_key(read.queue, read.key)
                found = [] if message is None else [message]
        except StoreError as exc:
            self.server.read_failed(read.ticket, str(exc), self.now)
        else:
            self.server.read_done(read.ticket, found, self.now)

    def answer_reads(self) -> None:
        """Answer the reads held back (``auto_read=False``), in order."""
        while self.reads:
            self._answer(self.reads.pop(0))
            self.run()

    def release(self) -> None:
        """Write the batch held back (``auto_write=False``) and report it durable."""
        batch = self.held.pop(0)
        self.store.write(batch)
        self.server.batch_written(self.now)
        self.run()

    def tick(self, seconds: float) -> None:
        """Advance the fake clock, firing the server's timer as often as it asks."""
        end = self.now + seconds
        while True:
            deadline = self.server.next_deadline()
            if deadline > end:
                break
            self.now = max(self.now, deadline)
            self.server.handle_timer(self.now)
            self.run()
        self.now = end

    # -- peers ----------------------------------------------------------------------------

    def peer(
        self,
        path: str = "/",
        *,
        protocol: ClientProtocol | None = None,
        address: str = "127.0.0.1",
        subject: str | None = None,
    ) -> Peer:
        """A connected client that sent its upgrade request (``protocol``'s, or a plain one
        to ``path``) from ``address`` with a verified certificate of ``subject``."""
        conn = self.server.connect(self.now, address, subject)
        peer = Peer(conn, protocol or ClientProtocol("localhost", path))
        self.peers[conn] = peer
        self.flush(peer)
        return peer

    def raw_peer(self, address: str = "127.0.0.1") -> int:
        """A connection (from ``address``) that sends whatever bytes the test gives it."""
        conn = self.server.connect(self.now, address)
        self.peers[conn] = Peer(conn, ClientProtocol("localhost", "/"))
        return conn

    def send_raw(self, conn: int, data: bytes) -> bytes:
        """Feed raw bytes; returns what the server wrote back to that connection."""
        peer = self.peers[conn]
        before = len(peer.raw)
        self.server.receive_data(conn, data, self.now)
        self.run()
        return bytes(peer.raw[before:])

    def flush(self, peer: Peer) -> None:
        """Send what the peer's protocol has queued."""
        data = peer.protocol.data_to_send()
        if data:
            self.server.receive_data(peer.conn, data, self.now)
        self.run()

    def drop(self, peer: Peer) -> None:
        """The peer vanishes without a close frame."""
        self.server.receive_eof(peer.conn, self.now)
        self.run()

    def send_frame(self, peer: Peer, obj: Any) -> None:
        """Send one MessagePack-encoded binary frame."""
        from wsproto.events import BytesMessage

        peer.protocol._out.append(peer.protocol._ws.send(BytesMessage(data=msgpack.packb(obj))))
        self.flush(peer)

    def take_events(self, peer: Peer) -> list[ClientEvent]:
        events, peer.events = peer.events, []
        return events
