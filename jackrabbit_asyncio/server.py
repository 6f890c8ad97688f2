"""The asyncio shell: one event loop, one ``asyncio.Protocol`` per connection, one writer thread.

It drives ``jackrabbit_core.server.Server`` (the *core*; its module docstring is the calling
contract) and decides nothing the core could decide. Everything runs on the event loop thread
except ``Store.write``, which runs on a single writer thread:

==============================  ==================================================================
loop event                      core call, then one ``_flush()``
==============================  ==================================================================
TLS handshake done              ``connect(now)`` (a failed handshake never reaches the core)
``buffer_updated`` (bytes in)   ``receive_data(conn, data, now)``
``connection_lost``             ``receive_eof(conn, now)``
``pause_`` / ``resume_writing`` ``set_writable(conn, False / True, now)``
the timer fires                 ``handle_timer(now)``
the writer finished a batch     ``batch_written(now)`` or ``batch_failed(reason, now)``
SIGTERM / SIGINT                ``shutdown(now)``
==============================  ==================================================================

``_flush()`` carries out ``actions()`` in order (``Send`` -> ``transport.write``,
``CloseTransport`` -> ``transport.close``, ``PauseReading`` / ``ResumeReading`` -> the
transport's, ``WriteBatch`` -> the writer thread) and re-arms the single timer at
``next_deadline()`` when it moved. A transport may call ``pause_writing`` from inside
``write``; that core call's actions are then carried out by the same ``_flush`` (it loops), so
bytes always leave in the order the core produced them.

Why protocols and not streams: ``buffer_updated`` hands the decrypted bytes straight to the core,
and each ``Send`` (all of a connection's output of one core call, already joined) is one
``transport.write``; streams would add a buffer copy and a task switch on both paths.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import ssl
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, cast

from jackrabbit_core import Config, ConfigError
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
from jackrabbit_host.cli import bind_error
from jackrabbit_host.reads import CoreCall, Reader
from jackrabbit_host.startup import cluster_node, core_server, open_store
from jackrabbit_host.tls import server_context

from .relay import Pipe

if TYPE_CHECKING:  # psycopg, which it needs, is an optional extra
    from jackrabbit_host.cluster import ClusterNode

__all__ = ["Server", "serve"]

log = logging.getLogger("jackrabbit.asyncio")

#: A connection's buffered outgoing bytes past which the core is told it is not writable ...
HIGH_WATER: Final = 1024 * 1024
#: ... and under which it is writable again.
LOW_WATER: Final = 256 * 1024
#: Seconds the TLS ``close_notify`` exchange may take before a closed transport is dropped.
CLOSE_TIMEOUT: Final = 5.0
#: Seconds a shutdown waits for clients to leave and the last batch to be written.
SHUTDOWN_TIMEOUT: Final = 5.0
#: Decrypted bytes handed to the core per connection per turn of the loop (one TLS record
#: holds at most 16 KiB).
READ_SLICE: Final = 16 * 1024
#: How often connections with unwritten deliveries to an original-dialect consumer are
#: checked for being written out (``WatchFlush``).
FLUSH_POLL: Final = 0.005
#: Pending connections the kernel may queue for us.
BACKLOG: Final = 1024


async def serve(config: Config) -> Server:
    """Open the store, load the certificate and start listening: a running ``Server``.

    Raises ``ConfigError`` or ``StoreError`` with a one-line message (bad certificate files,
    an address that cannot be bound, a database that cannot be opened). Call it on the loop
    that will run the server.
    """
    context = server_context(config)  # before the store: a bad certificate leaves no --db
    store = open_store(config)
    try:
        server = Server(config, store, context)
        await server._listen()
        await server._join()
    except BaseException:
        store.close()
        raise
    return server


def _written_out(transport: asyncio.Transport) -> bool:
    """Whether everything written to ``transport`` has reached the socket: nothing in the
    TLS layer's buffers nor in the socket transport's beneath it."""
    if transport.get_write_buffer_size():
        return False
    inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    return inner is None or not inner.get_write_buffer_size()


class _Connection(asyncio.BufferedProtocol):
    """One TLS connection: forwards its events to the core, nothing more.

    A buffered protocol with a small buffer: asyncio's TLS layer decrypts at most
    ``READ_SLICE`` bytes into it per turn of the loop and comes back for the rest on the
    next turn, so a producer's burst is handed to the core in slices. Between slices the loop
    runs other callbacks, above all the writer thread's "batch durable": the first adds of a
    burst are being synced while the rest are still being decoded, and their confirmations
    leave early, which keeps producers' pipelines full instead of in lock step.
    """

    __slots__ = ("_buffer", "_server", "handed", "id", "transport")

    def __init__(self, server: Server) -> None:
        self._server = server
        self.id = 0  # the core's id, set once the TLS handshake is done
        self.transport: asyncio.Transport | None = None
        #: Bytes of ``Send`` data handed to the transport, in all (for ``WatchFlush``).
        self.handed = 0
        self._buffer = memoryview(bytearray(READ_SLICE))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        self.id = self._server._opened(self)
        if log.isEnabledFor(logging.INFO):
            log.info("connection %d from %s", self.id, transport.get_extra_info("peername"))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        server = self._server
        server._core.receive_data(self.id, self._buffer[:nbytes].tobytes(), server._loop.time())
        server._flush()

    def eof_received(self) -> bool:
        return False  # let the transport close; connection_lost reports it

    def connection_lost(self, exc: Exception | None) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info("connection %d closed%s", self.id, f": {exc}" if exc else "")
        self._server._lost(self)

    def pause_writing(self) -> None:
        server = self._server
        server._core.set_writable(self.id, False, server._loop.time())
        server._flush()

    def resume_writing(self) -> None:
        server = self._server
        server._core.set_writable(self.id, True, server._loop.time())
        server._flush()


class Server:
    """A running asyncio-shell server; make one with ``await serve(config)``.

    ``await serve_forever()`` serves until ``stop()`` (safe from a signal handler added with
    ``loop.add_signal_handler``), then shuts down cleanly and returns. ``await shutdown()``
    does both halves. ``async with`` shuts down on the way out.

    Embedding it: ``python -m jackrabbit_asyncio`` also lowers ``sys.setswitchinterval`` to
    1 ms, so the writer thread gets the GIL back soon after each fsync while the loop is busy;
    a process-wide setting, left to the program that embeds the server.
    """

    def __init__(self, config: Config, store: Store, context: ssl.SSLContext) -> None:
        self.config = config
        #: The port actually listened on (the real one with ``--port 0``); set by ``serve``.
        self.port = 0
        self._store = store
        self._context = context
        self._loop = asyncio.get_running_loop()
        self._core = core_server(config, store, self._loop.time())
        self._reader = Reader(store, self._post)
        #: Cluster mode (protocol §10): the node's membership, and the relayed connections.
        self._cluster: ClusterNode | None = None
        self._pipes: set[Pipe] = set()
        self._listener: asyncio.Server | None = None
        #: Connections the core knows, by core id.
        self._by_id: dict[int, _Connection] = {}
        #: Connections whose flush the core waits to hear of (``WatchFlush``).
        self._watching: set[_Connection] = set()
        self._watch_timer: asyncio.Handle | None = None
        #: Every connection whose TLS handshake is done and whose transport is not yet gone.
        self._connections: set[_Connection] = set()
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
        try:
            self._listener = await self._loop.create_server(
                lambda: _Connection(self),
                config.host,
                config.port,
                ssl=self._context,
                ssl_handshake_timeout=config.handshake_timeout,
                ssl_shutdown_timeout=CLOSE_TIMEOUT,
                backlog=BACKLOG,
                reuse_address=True,
            )
        except OSError as exc:
            raise ConfigError(bind_error(config, exc)) from None
        self.port = self._listener.sockets[0].getsockname()[1]
        self._cluster = cluster_node(config, self._store, self.port)
        self._install_exception_handler()
        self._flush()  # arms the timer (the heartbeat sweep)

    async def _join(self) -> None:
        """Cluster mode: register the node (off the loop: it may wait out an old process of
        the same name), then start its lease keeper and locator. Questions the core asks
        meanwhile wait for them."""
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
        """Hand connection ``action.conn`` over to a pipe to the node serving its queue."""
        connection = self._by_id.pop(action.conn, None)
        node = self._cluster
        if connection is None or connection.transport is None or node is None:
            return
        self._connections.discard(connection)
        self._watching.discard(connection)
        transport = connection.transport
        head = node.relay_head(action, relay.peer_name(transport.get_extra_info("peername")))
        pipe = Pipe(transport, functools.partial(self._relay_done, action.conn))
        self._pipes.add(pipe)
        self._loop.create_task(pipe.run(head, action.address, node.link_context, self._loop))
        self._changed.set()

    def _relay_done(self, conn_id: int, pipe: Pipe) -> None:
        """A relayed connection ended: it no longer counts against --max-connections."""
        self._pipes.discard(pipe)
        if not self._done.is_set():
            self._core.receive_eof(conn_id, self._loop.time())
            self._flush()

    # -- running --------------------------------------------------------------------------

    async def serve_forever(self) -> None:
        """Serve until ``stop()``; then shut down (see ``shutdown``) and return."""
        await self._stopping.wait()
        await self._close()

    def stop(self) -> None:
        """Ask ``serve_forever`` to shut down and return. Call it on the loop's thread."""
        self._stopping.set()

    async def shutdown(self) -> None:
        """Stop accepting, close every client with 1001, wait (at most ``SHUTDOWN_TIMEOUT``)
        for them to leave and for the last batch to be durable, then close the store."""
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
            if self._listener is not None:
                self._listener.close()
            self._core.shutdown(loop.time())
            self._flush()
            deadline = loop.time() + SHUTDOWN_TIMEOUT
            while not self._quiet():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
            for connection in list(self._connections):
                if connection.transport is not None:
                    connection.transport.abort()
            for pipe in list(self._pipes):
                pipe.abort()
            if self._timer is not None:
                self._timer.cancel()
            if self._writing:
                log.warning("a store write is still running at exit: the store is left open")
                self._writer.shutdown(wait=False)
                return
            self._writer.shutdown(wait=True)
            await asyncio.sleep(0)  # let the aborted transports report connection_lost
            if self._cluster is not None:
                await loop.run_in_executor(None, self._cluster.close)
            self._reader.close()
            self._store.close()  # in a cluster: hands the queues over at once
        finally:
            self._done.set()

    def _quiet(self) -> bool:
        """Every client gone and nothing left to write."""
        return not self._connections and not self._writing and self._core.idle

    # -- connections ----------------------------------------------------------------------

    def _opened(self, connection: _Connection) -> int:
        assert connection.transport is not None
        conn_id = self._core.connect(self._loop.time())
        self._connections.add(connection)
        self._by_id[conn_id] = connection
        self._flush()
        return conn_id

    def _lost(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        self._watching.discard(connection)
        self._by_id.pop(connection.id, None)
        self._core.receive_eof(connection.id, self._loop.time())
        self._flush()
        self._changed.set()

    # -- carrying out the core's actions --------------------------------------------------

    def _flush(self) -> None:
        """Carry out ``actions()`` in order, then re-arm the timer; run after every core call.

        Re-entrant calls (a ``transport.write`` that calls ``pause_writing``) only ask the
        running one to go round again.
        """
        if self._flushing:
            self._again = True
            return
        self._flushing = True
        core_server, by_id = self._core, self._by_id
        watch = False
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
                    connection = by_id.get(action.conn)
                    transport = None if connection is None else connection.transport
                    if connection is None or transport is None:
                        continue
                    if isinstance(action, Send):
                        if not transport.is_closing():
                            connection.handed += len(action.data)
                            transport.write(action.data)
                    elif isinstance(action, CloseTransport):
                        del by_id[action.conn]
                        self._watching.discard(connection)
                        transport.close()
                        self._changed.set()
                    elif isinstance(action, PauseReading):
                        if not transport.is_closing():
                            transport.pause_reading()
                    elif isinstance(action, ResumeReading):
                        if not transport.is_closing():
                            transport.resume_reading()
                    elif isinstance(action, WatchFlush):
                        self._watching.add(connection)
                        watch = True
                if not self._again:
                    break
        finally:
            self._flushing = False
        if watch and self._watch_timer is None:
            # Not inline: the report may free the consumer for more deliveries, and the loop
            # must get a turn between them.
            self._watch_timer = self._loop.call_soon(self._report_flushed)
        deadline = core_server.next_deadline()
        if deadline != self._deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._deadline = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _report_flushed(self) -> None:
        """Tell the core which watched connections have written out everything handed to
        them; look again shortly for those that have not."""
        self._watch_timer = None
        done = [c for c in self._watching if c.transport is not None and _written_out(c.transport)]
        for connection in done:
            self._watching.discard(connection)
            self._core.flushed(connection.id, connection.handed, self._loop.time())
        self._flush()
        if self._watching and self._watch_timer is None:
            self._watch_timer = self._loop.call_later(FLUSH_POLL, self._report_flushed)

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

    # -- the loop's exception handler -----------------------------------------------------

    def _install_exception_handler(self) -> None:
        previous = self._loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            message = str(context.get("message", ""))
            if isinstance(exc, ssl.SSLError | ConnectionError | TimeoutError) or (
                "SSL" in message and (exc is None or isinstance(exc, OSError))
            ):
                # Garbage before TLS, plain HTTP on the TLS port, a scanner: not our problem.
                log.debug("%s: %r", message, exc)
                return
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        self._loop.set_exception_handler(handler)
