"""The asyncio shell: one event loop, a ``Link`` per connection, one writer thread.

It drives ``jackrabbit_core.server.Server`` (the *core*; its module docstring is the calling
contract) and decides nothing the core could decide. Everything runs on the event loop thread
except ``Store.write``, which runs on a single writer thread:

================================  ================================================================
loop event                        core call, then one ``_flush()``
================================  ================================================================
a link's TLS handshake is done    ``connect(now, address, subject)`` (a failed handshake never
                                  reaches the core)
plaintext from a link             ``receive_data(conn, data, now)``
the link's peer closed or failed  ``receive_eof(conn, now)``
its buffer went over / under      ``set_writable(conn, False / True, now)``
a watched link wrote more         ``flushed(conn, written, now)`` (on the next turn)
the timer fires                   ``handle_timer(now)``
the writer finished a batch       ``batch_written(now)`` or ``batch_failed(reason, now)``
SIGHUP (``reload``)               ``set_access(policy, now)`` (with ``--auth``)
SIGTERM / SIGINT                  ``shutdown(now)``
================================  ================================================================

``_flush()`` carries out ``actions()`` in order (``Send`` -> ``Link.write``,
``CloseTransport`` -> ``Link.close``, ``PauseReading`` / ``ResumeReading`` -> the link's,
``WatchFlush`` -> a ``flushed`` report once the link has written that far, ``WriteBatch`` ->
the writer thread) and re-arms the single timer at ``next_deadline()`` when it moved. A link
may report its buffer full from inside ``write``; that core call's actions are then carried out
by the same ``_flush`` (it loops), so bytes always leave in the order the core produced them.

The sockets, TLS and buffers are ``link.Link``'s (TLS over memory buffers, so that a
connection costs only what it holds and the shell knows what reached the kernel); who may
connect at all is ``acceptor.Acceptor``'s (every connection counts from its accept on).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import ssl
from types import TracebackType
from typing import TYPE_CHECKING

from jackrabbit_core import Config, ConfigError
from jackrabbit_core.access import AccessPolicy
from jackrabbit_core.actions import (
    CloseTransport,
    ClusterStatus,
    FindKey,
    Locate,
    PauseReading,
    ReadMessages,
    Relay,
    ResumeReading,
    Send,
    WatchFlush,
    WriteBatch,
)
from jackrabbit_core.storage import Batch, Store
from jackrabbit_host import relay
from jackrabbit_host.access import load_access, reload_settings, remote_of
from jackrabbit_host.limits import SHUTDOWN_STALL, SHUTDOWN_TIMEOUT, slots, tls_timeout
from jackrabbit_host.listeners import listen
from jackrabbit_host.reads import CoreCall, Reader
from jackrabbit_host.startup import cluster_node, core_server, open_store
from jackrabbit_host.tls import server_context

from .acceptor import Acceptor
from .link import Link, Phase, Shared
from .relay import Pipe

if TYPE_CHECKING:  # psycopg, which it needs, is an optional extra
    from jackrabbit_host.cluster import ClusterNode

__all__ = ["Server", "serve"]

log = logging.getLogger("jackrabbit.asyncio")

#: Seconds between two looks, during a shutdown, for connections that stopped moving.
_STALL_CHECK = 0.05


async def serve(config: Config) -> Server:
    """Open the store, load the certificate and start listening: a running ``Server``.

    Raises ``ConfigError`` or ``StoreError`` with a one-line message (bad certificate files,
    an address that cannot be bound, a database that cannot be opened). Call it on the loop
    that will run the server.
    """
    context = server_context(config)  # before the store: a bad certificate leaves no --db
    access = load_access(config)  # and so does a bad --auth file
    store = open_store(config)
    try:
        server = Server(config, store, context, access)
        await server._listen()
        await server._join()
    except BaseException:
        store.close()
        raise
    return server


class Server:
    """A running asyncio-shell server; make one with ``await serve(config)``.

    ``await serve_forever()`` serves until ``stop()`` (safe from a signal handler added with
    ``loop.add_signal_handler``), then shuts down cleanly and returns. ``await shutdown()``
    does both halves. ``async with`` shuts down on the way out.

    Embedding it: ``python -m jackrabbit_asyncio`` also lowers ``sys.setswitchinterval`` to
    1 ms, so the writer thread gets the GIL back soon after each fsync while the loop is busy;
    a process-wide setting, left to the program that embeds the server.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        context: ssl.SSLContext,
        access: AccessPolicy | None = None,
    ) -> None:
        self.config = config
        #: The port actually listened on (the real one with ``--port 0``); set by ``serve``.
        self.port = 0
        self._store = store
        self._loop = asyncio.get_running_loop()
        self._core = core_server(config, store, self._loop.time(), access)
        self._reader = Reader(store, self._post)
        #: Cluster mode (protocol §10): the node's membership, and the relayed links.
        self._cluster: ClusterNode | None = None
        self._pipes: dict[Link, Pipe] = {}
        self._shared = Shared(self._loop, context, self, config.budget)
        self._acceptor: Acceptor | None = None
        #: Links the core knows, by core id.
        self._by_id: dict[int, Link] = {}
        #: Links whose written bytes the core waits to hear of (``WatchFlush``).
        self._watching: set[Link] = set()
        self._report: asyncio.Handle | None = None
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "jackrabbit-store")
        self._writing = False
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._flushing = False
        self._again = False
        self._stopping = asyncio.Event()
        #: Set whenever something a shutdown waits for may have changed.
        self._changed = asyncio.Event()
        self._done = asyncio.Event()
        self._closed = False

    async def _listen(self) -> None:
        config = self.config
        listeners = listen(config)
        self.port = listeners[0].getsockname()[1]
        self._cluster = cluster_node(config, self._store, self.port)
        shared = self._shared
        self._acceptor = Acceptor(
            self._loop,
            listeners,
            lambda sock, now: Link(shared, sock, now),
            slots=slots(config),
            timeout=tls_timeout(config),
        )
        self._acceptor.start()
        self._flush()  # arms the timer (the heartbeat sweep)

    # -- cluster mode (protocol §10) ----------------------------------------------------------

    async def _join(self) -> None:
        """Register the node (off the loop: it may wait out an old process of the same name),
        then start its lease keeper and locator. Questions the core asks meanwhile wait."""
        node = self._cluster
        if node is not None:
            await self._loop.run_in_executor(None, node.join)
            node.start(self._post)

    def _post(self, call: CoreCall) -> None:
        """From another thread: run ``call(core, now)`` on the loop, then carry out."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._run_posted, call)

    def _run_posted(self, call: CoreCall) -> None:
        if not self._done.is_set():
            call(self._core, self._loop.time())
            self._flush()

    def _relay(self, action: Relay) -> None:
        """Pipe link ``action.conn`` to the node serving its queue; its events go to the
        pipe from now on (``received``, ``writable``, ``ended``, ``gone``)."""
        link = self._by_id.pop(action.conn, None)
        node = self._cluster
        if link is None or node is None:
            return
        self._watching.discard(link)
        link.watched = False
        try:
            peer = relay.peer_name(link.sock.getpeername())
        except OSError:
            peer = "unknown"
        pipe = self._pipes[link] = Pipe(link)
        head = node.relay_head(action, peer)
        self._loop.create_task(pipe.run(head, action.address, node.link_context, self._loop))

    # -- running --------------------------------------------------------------------------

    async def serve_forever(self) -> None:
        """Serve until ``stop()``; then shut down (see ``shutdown``) and return."""
        await self._stopping.wait()
        await self._close()

    def stop(self) -> None:
        """Ask ``serve_forever`` to shut down and return. Call it on the loop's thread."""
        self._stopping.set()

    def reload(self) -> None:
        """SIGHUP: reload the certificate files and the ``--auth`` file (protocol §11.9).
        Call it on the loop's thread."""
        policy = reload_settings(self.config, self._shared.context)
        if policy is not None:
            self._core.set_access(policy, self._loop.time())
            self._flush()

    async def shutdown(self) -> None:
        """Stop accepting, close every client with 1001, wait (at most ``SHUTDOWN_TIMEOUT``)
        for their close handshakes and for the last batch to be durable, then close the
        store. A client that lets ``SHUTDOWN_STALL`` pass without taking a byte (one that
        does not read, or does not answer the close) is dropped on the way: it never will."""
        self.stop()
        await self._close()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    async def _close(self) -> None:
        if self._closed:
            await self._done.wait()
            return
        self._closed = True
        loop = self._loop
        try:
            if self._acceptor is not None:
                self._acceptor.close()
            for pipe in list(self._pipes.values()):
                pipe.end()  # the owners close their side of these clients
            self._core.shutdown(loop.time())
            self._flush()
            deadline = loop.time() + SHUTDOWN_TIMEOUT
            moved: dict[Link, tuple[int, float]] = {}
            while not self._quiet():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._drop_stalled(moved)
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait(), min(remaining, _STALL_CHECK)
                    )
            for pipe in list(self._pipes.values()):
                pipe.abort()
            if self._acceptor is not None:
                for link in list(self._acceptor.links):
                    link.abort()
            for handle in (self._timer, self._report):
                if handle is not None:
                    handle.cancel()
            if self._writing:
                log.warning("a store write is still running at exit: the store is left open")
                self._writer.shutdown(wait=False)
                return
            self._writer.shutdown(wait=True)
            if self._cluster is not None:
                await loop.run_in_executor(None, self._cluster.close)
            self._reader.close()
            self._store.close()  # in a cluster: hands the queues over at once
        finally:
            self._done.set()

    def _drop_stalled(self, moved: dict[Link, tuple[int, float]]) -> None:
        """Abort each link not lingering whose ``written`` has not moved for
        ``SHUTDOWN_STALL``; ``moved`` keeps each one's count and when it last changed."""
        if self._acceptor is None:
            return
        now = self._loop.time()
        for link in list(self._acceptor.links):
            if link.phase is Phase.LINGER:
                continue
            written, since = moved.get(link, (-1, now))
            if written != link.written:
                moved[link] = (link.written, now)
            elif now - since >= SHUTDOWN_STALL:
                log.debug("connection %d: no close from the peer", link.id)
                link.abort()

    def _quiet(self) -> bool:
        """Every client gone, or sent all we had for it and a FIN (what is left is its own
        EOF, not worth waiting for), and nothing left to write."""
        links = self._acceptor.links if self._acceptor is not None else ()
        return (
            all(link.phase is Phase.LINGER for link in links)
            and not self._writing
            and self._core.idle
        )

    # -- what links report (``link.Events``) -------------------------------------------------

    def established(self, link: Link) -> None:
        if self._acceptor is not None:
            self._acceptor.established(link)
        peername = None
        with contextlib.suppress(OSError):
            peername = link.sock.getpeername()
        address, subject = remote_of(peername, link.peercert())
        link.id = self._core.connect(self._loop.time(), address, subject)
        self._by_id[link.id] = link
        if log.isEnabledFor(logging.INFO):
            log.info("connection %d from %s", link.id, peername)
        self._flush()

    def received(self, link: Link, data: bytes) -> None:
        pipe = self._pipes.get(link)
        if pipe is not None:
            pipe.from_client(data)
            return
        self._core.receive_data(link.id, data, self._loop.time())
        self._flush()

    def ended(self, link: Link) -> None:
        pipe = self._pipes.get(link)
        if pipe is not None:
            pipe.end()
        elif self._by_id.get(link.id) is link:
            self._core.receive_eof(link.id, self._loop.time())
            self._flush()

    def writable(self, link: Link, writable: bool) -> None:
        pipe = self._pipes.get(link)
        if pipe is not None:
            pipe.client_writable(writable)
            return
        self._core.set_writable(link.id, writable, self._loop.time())
        self._flush()

    def wrote(self, link: Link) -> None:
        if self._report is None:
            # Not inline: the report may free the consumer for more deliveries, and the loop
            # must get a turn between them.
            self._report = self._loop.call_soon(self._report_flushed)

    def lingering(self, link: Link) -> None:
        self._changed.set()  # a shutdown does not wait for its EOF

    def gone(self, link: Link) -> None:
        if self._acceptor is not None:
            self._acceptor.discard(link)
        pipe = self._pipes.pop(link, None)
        if pipe is not None:  # a relay ended: it no longer counts against --max-connections
            pipe.end()
            if not self._done.is_set():
                self._core.receive_eof(link.id, self._loop.time())
                self._flush()
        if link.id:
            if self._by_id.get(link.id) is link:  # dropped before the core closed it
                del self._by_id[link.id]
            self._watching.discard(link)
            log.info("connection %d closed", link.id)
        self._changed.set()

    # -- carrying out the core's actions --------------------------------------------------

    def _flush(self) -> None:
        """Carry out ``actions()`` in order, then re-arm the timer; run after every core call.

        Re-entrant calls (a ``Link.write`` that reports the buffer full) only ask the running
        one to go round again.
        """
        if self._flushing:
            self._again = True
            return
        self._flushing = True
        core_server, by_id = self._core, self._by_id
        try:
            while True:
                self._again = False
                for action in core_server.actions():
                    if isinstance(action, WriteBatch):
                        self._write(action.batch)
                        continue
                    if isinstance(action, ReadMessages | FindKey):
                        if self._reader.carry_out(action, core_server, self._loop.time()):
                            self._again = True
                        continue
                    if isinstance(action, Locate | ClusterStatus):
                        if self._cluster is not None:
                            self._cluster.carry_out(action)
                        continue
                    if isinstance(action, Relay):
                        self._relay(action)
                        continue
                    link = by_id.get(action.conn)
                    if link is None:
                        continue
                    if isinstance(action, Send):
                        link.write(action.data)
                    elif isinstance(action, CloseTransport):
                        del by_id[action.conn]
                        self._watching.discard(link)
                        link.close()
                        self._changed.set()
                    elif isinstance(action, PauseReading):
                        link.pause_reading()
                    elif isinstance(action, ResumeReading):
                        link.resume_reading()
                    elif isinstance(action, WatchFlush):
                        link.watched = True
                        self._watching.add(link)
                        self.wrote(link)
                if not self._again:
                    break
        finally:
            self._flushing = False
        deadline = core_server.next_deadline()
        if deadline != self._deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._deadline = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _report_flushed(self) -> None:
        """Tell the core how far each watched link has written; a link written out is no
        longer watched, the others report again when they write more (``wrote``)."""
        self._report = None
        now = self._loop.time()
        for link in list(self._watching):
            if link.written >= link.handed:
                self._watching.discard(link)
                link.watched = False
            self._core.flushed(link.id, link.written, now)
        self._flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._deadline = None
        self._core.handle_timer(self._loop.time())
        self._flush()

    # -- the writer thread ----------------------------------------------------------------

    def _write(self, batch: Batch) -> None:
        """Hand ``batch`` to the writer thread; the core allows one outstanding at a time."""
        self._writing = True
        future = self._writer.submit(self._store.write, batch)
        future.add_done_callback(self._written_threadsafe)

    def _written_threadsafe(self, future: concurrent.futures.Future[None]) -> None:
        """On the writer thread: get back to the loop (one hop, no asyncio future)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._written, future)

    def _written(self, future: concurrent.futures.Future[None]) -> None:
        self._writing = False
        exc = future.exception()
        now = self._loop.time()
        if exc is None:
            self._core.batch_written(now)
        else:
            if isinstance(exc, Exception) and not isinstance(exc, ConfigError):
                log.error("store write failed: %s", exc)
            self._core.batch_failed(str(exc), now)
        self._flush()
        self._changed.set()
