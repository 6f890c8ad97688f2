"""The threads shell: blocking reads, a thread per connection, no event loop.

It drives ``jackrabbit_core.server.Server`` (the *core*; its module docstring is the calling
contract) and does nothing the core could decide. The threads and what each one does:

=================  ==========================================================================
thread             job
=================  ==========================================================================
``serve_forever``  the front door (``frontdoor.FrontDoor``): accepts, runs every pending TLS
                   handshake non-blocking, and hands finished ones to a new reader; once
                   ``stop()`` is called, runs the shutdown
reader, per conn   ``recv`` -> ``receive_data``; EOF -> ``receive_eof``
writer             drains every connection's outgoing buffer (``writer.Writer``)
store writer       ``store.write(batch)`` -> ``batch_written`` / ``batch_failed``
timer              sleeps until ``next_deadline()`` -> ``handle_timer``; forces stuck closes
=================  ==========================================================================

One lock (``Server._lock``) guards the core. A thread takes it, calls the core, and carries out
``actions()`` before letting go: carrying one out is only an append to a buffer, a flag or a
queue, never a socket call or a disk write, and doing it under the lock keeps each
connection's bytes in the order the core produced them (two threads unlocking and then
appending could swap two deliveries). The socket calls happen on the front door, the readers
and the writer, the disk writes on the store writer, all without the lock.

Only readers wait for the lock. The store writer, the timer and the writer *post* their core
call (a batch is durable, the timer fired, a buffer drained) and go on; whoever holds the lock
runs posted calls before letting go, and a reader runs them between slices of a large read.
Under the GIL a thread woken to take a contended lock can wait milliseconds for its turn, so
the alternative, the store writer queueing behind busy readers, left the disk idle; this way
a durable batch is answered, and the next one handed out, within one slice.

TLS runs in ``tls.TLSStream`` (an ``ssl.SSLObject`` over memory buffers) rather than an
``ssl.SSLSocket``, which must not be read on one thread while another writes to it.

What a connection costs: nothing but its socket until it finishes TLS (the front door bounds
how many may try at once, and every one counts against the slots from accept on); then its
TLS state, its reader's stack and no buffer while idle, since a reader waits in ``poll``
rather than in a ``recv`` holding a buffer.

A slow consumer never blocks anyone else: its bytes pile up in its own buffer, the writer
sends them as the socket takes them, and past the budget's ``high_water`` buffered bytes the
core is told it is not writable (so it stops delivering to it) until the buffer is back under
``low_water``. Past ``read_stop`` buffered bytes its reader stops reading, whatever the peer
sends (pings, bad requests, adds): a peer that never reads cannot grow our memory. The limits
and timeouts are ``jackrabbit_host.limits``' and ``--memory-budget``'s, as in the asyncio
shell.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import heapq
import itertools
import logging
import math
import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Final

from jackrabbit_core import Config, StoreError
from jackrabbit_core import server as core
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
from jackrabbit_host.access import load_access, reload_settings, remote_of
from jackrabbit_host.limits import (
    CLOSE_TIMEOUT,
    SHUTDOWN_STALL,
    SHUTDOWN_TIMEOUT,
    slots,
    tls_timeout,
)
from jackrabbit_host.listeners import listen
from jackrabbit_host.reads import CoreCall, Reader
from jackrabbit_host.relay import peer_name
from jackrabbit_host.startup import cluster_node, core_server, open_store
from jackrabbit_host.tls import server_context

from .conn import Conn
from .frontdoor import Address, FrontDoor
from .relay import Link
from .tls import TLSStream
from .writer import Writer

if TYPE_CHECKING:  # psycopg, which it needs, is an optional extra
    from jackrabbit_host.cluster import ClusterNode

__all__ = ["Server", "serve"]

log = logging.getLogger("jackrabbit.threads")

#: How long a shutdown waits for the threads to end, after ``SHUTDOWN_TIMEOUT``.
JOIN_TIMEOUT: Final = 5.0
#: Bytes asked of a socket per ``recv`` (only once ``poll`` says some are there).
RECV_SIZE: Final = 64 * 1024
#: Bytes fed to the core per call: posted calls (a durable batch, the timer) run between
#: slices, so a large read does not keep them waiting behind it.
SLICE: Final = 16 * 1024


def serve(config: Config) -> Server:
    """Open the store, load the certificate and listen: a ``Server`` ready for
    ``serve_forever()``. Raises ``ConfigError`` or ``StoreError`` with a one-line message."""
    context = server_context(config)  # before the store: a bad certificate leaves no --db
    access = load_access(config)  # and so does a bad --auth file
    store = open_store(config)
    try:
        listeners = listen(config)
        server = Server(config, store, context, listeners, access)
        server._join()
    except BaseException:
        store.close()
        raise
    return server


class Server:
    """A running threads-shell server; make one with ``serve()``.

    Call ``serve_forever()`` on one thread (the main thread for signals); ``stop()`` from a
    signal handler or any thread makes it shut down and return. ``shutdown()`` does both
    halves from another thread: asks and waits.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        context: ssl.SSLContext,
        listeners: list[socket.socket],
        access: AccessPolicy | None = None,
    ) -> None:
        self.config = config
        self._store = store
        #: The port actually listened on (the real one with ``--port 0``).
        self.port: int = listeners[0].getsockname()[1]
        self._lock = threading.Lock()
        #: Core calls posted by threads that do not wait for ``_lock`` (see the docstring).
        self._posted: collections.deque[Callable[[], None]] = collections.deque()
        self._context = context
        self._core = core_server(config, store, time.monotonic(), access)
        self._reader = Reader(store, self._post_core)
        #: Cluster mode (protocol §10): the node's membership.
        self._cluster: ClusterNode | None = cluster_node(config, store, self.port)
        #: Connections by core id; touched only under ``_lock``.
        self._conns: dict[int, Conn] = {}
        # Reader threads, for the accept bound and the shutdown.
        self._registry_lock = threading.Lock()
        self._settled = threading.Condition(self._registry_lock)
        self._readers: set[threading.Thread] = set()
        budget = config.budget
        self._high_water, self._low_water = budget.high_water, budget.low_water
        self._read_stop = budget.read_stop
        self._front_door = FrontDoor(
            listeners,
            context,
            slots=slots(config),
            timeout=tls_timeout(config),
            held=self._readers.__len__,
            ready=self._admit,
        )
        self._writer = Writer(self._sent)
        # The store writer.
        self._batches: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._store_thread = threading.Thread(
            target=self._store_loop, name="jackrabbit-store", daemon=True
        )
        # The timer: the core's next deadline and the forced closes, one thread.
        self._timer_cond = threading.Condition()
        self._wake_at = math.inf
        self._closes: list[tuple[float, int, Conn]] = []
        self._close_order = itertools.count()
        self._timer_stop = False
        self._timer_thread = threading.Thread(
            target=self._timer_loop, name="jackrabbit-timer", daemon=True
        )
        self._done = threading.Event()
        self._started = False

    # -- running --------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Accept connections until ``stop()``; then shut down cleanly and return.

        The shutdown: stop accepting, ``core.shutdown`` (clients are closed with 1001), wait
        for them to leave and the last batch to be written (at most ``SHUTDOWN_TIMEOUT``, and
        a client that stalls for ``SHUTDOWN_STALL`` is dropped), shut what is left by force,
        join every thread, close the store.
        """
        self._started = True
        self._writer.start()
        self._store_thread.start()
        self._timer_thread.start()
        try:
            self._front_door.run()
        finally:
            self._close()
            self._done.set()

    def stop(self) -> None:
        """Ask ``serve_forever`` to shut down and return; safe in a signal handler."""
        self._front_door.stop()

    def reload(self) -> None:
        """SIGHUP: reload the certificate files and the ``--auth`` file (protocol §11.9).
        Safe in a signal handler: the new policy is posted to the core, not waited for."""
        policy = reload_settings(self.config, self._context)
        if policy is not None:
            self._post(lambda: self._core.set_access(policy, time.monotonic()))

    def shutdown(self) -> None:
        """``stop()`` and wait until ``serve_forever`` has returned (from another thread)."""
        self.stop()
        if self._started:
            self._done.wait()
        else:
            self._close()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- cluster mode (protocol §10) ------------------------------------------------------

    def _join(self) -> None:
        """Register the node (it may wait out an old process of the same name), then start
        its lease keeper and locator."""
        if self._cluster is not None:
            self._cluster.join()
            self._cluster.start(self._post_core)

    def _post_core(self, call: CoreCall) -> None:
        """From a host thread: run ``call(core, now)`` under the lock soon."""
        self._post(lambda: call(self._core, time.monotonic()))

    def _relay(self, conn: Conn, action: Relay) -> None:
        """``Relay``: pipe ``conn`` to the node serving its queue. With ``_lock`` held."""
        node = self._cluster
        if node is None:
            return
        try:
            peer = peer_name(conn.sock.getpeername())
        except OSError:
            peer = "unknown"
        link = conn.relay = Link(
            action.address,
            node.relay_head(action, peer),
            node.link_context,
            functools.partial(self._deliver, conn),
            functools.partial(self._closed, conn),
        )
        link.start()

    def _deliver(self, conn: Conn, data: bytes) -> bool:
        """A relay link's bytes for its client: queued for the writer, waiting while the
        buffer is over the budget's ``high_water``; False once the client is gone."""
        with conn.lock:
            while conn.buffered > self._high_water and not (conn.closing or conn.broken):
                conn.readable.wait(0.05)  # shared with the reader: poll, do not rely on notify
            if conn.closing or conn.broken:
                return False
            conn.out.append(data)
            conn.buffered += len(data)
        self._writer.wake(conn)
        return True

    # -- one connection: the reader thread ------------------------------------------------

    def _admit(self, sock: socket.socket, tls: TLSStream, address: Address) -> None:
        """The front door finished a TLS handshake: give the connection its reader thread."""
        thread = threading.Thread(
            target=self._connection,
            args=(sock, tls, address),
            name="jackrabbit-conn",
            daemon=True,
        )
        with self._registry_lock:
            self._readers.add(thread)
        try:
            thread.start()
        except RuntimeError as exc:  # the system's thread limit
            log.warning("connection refused: %s", exc)
            with self._registry_lock:
                self._readers.discard(thread)
            sock.close()

    def _connection(self, sock: socket.socket, tls: TLSStream, address: Address) -> None:
        """A reader thread's life: from the core's ``connect`` to the end of the socket."""
        conn: Conn | None = None
        try:
            remote, subject = remote_of(address, tls.peercert())
            with self._locked() as core_server:
                conn_id = core_server.connect(time.monotonic(), remote, subject)
                conn = Conn(conn_id, sock, tls, time.monotonic())
                self._conns[conn.id] = conn
            if log.isEnabledFor(logging.INFO):
                log.info("connection %d from %s", conn.id, address)
            self._session(conn)
        except Exception:
            log.exception("connection thread failed")
        finally:
            if conn is None:
                sock.close()
            else:
                self._writer.retire(conn)  # it closes the socket
                log.info("connection %d closed", conn.id)
            with self._registry_lock:
                self._readers.discard(threading.current_thread())
                self._settled.notify_all()

    def _session(self, conn: Conn) -> None:
        """Read until the end, then tell the core."""
        try:
            self._read_loop(conn)
        finally:
            if conn.relay is not None:
                conn.relay.close()
            with self._locked() as core_server:
                if not conn.closing or conn.relay is not None:  # a relay ends here (§10.3)
                    core_server.receive_eof(conn.id, time.monotonic())
            if not conn.closing:  # pragma: no cover - the core always closes after an EOF
                self._closed(conn)
            with self._locked():
                conn.done = True
                del self._conns[conn.id]

    def _read_loop(self, conn: Conn) -> None:
        sock, tls = conn.sock, conn.tls
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        raw = b""  # the first turn decrypts what came along with the handshake
        read_stop = self._read_stop
        while True:
            if not conn.closing:  # once the core closed it, wait for the hang-up, ignore the rest
                try:
                    self._decrypted(conn, raw)
                except ssl.SSLError as exc:
                    log.debug("connection %d: bad TLS record: %s", conn.id, exc)
                    return
                if tls.eof:
                    return
            with conn.lock:
                while (conn.paused or conn.buffered > read_stop) and not (
                    conn.closing or conn.broken
                ):
                    conn.readable.wait()
                if conn.broken:
                    return
            # Wait in poll, not in recv: an idle connection then holds no receive buffer.
            poller.poll()
            try:
                raw = sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                raw = b""
                continue
            except OSError:
                return
            if not raw:
                return
            conn.progress = time.monotonic()

    def _decrypted(self, conn: Conn, raw: bytes) -> None:
        """Decrypt ``raw`` and hand the plaintext to the core; wake the writer if TLS itself
        has something to say. Raises ``ssl.SSLError`` on a bad record."""
        data, to_send = conn.tls.decrypt(raw)
        if to_send:
            with conn.lock:
                conn.tls_pending = True
            self._writer.wake(conn)
        if data:
            self._receive(conn, data)

    def _receive(self, conn: Conn, data: bytes) -> None:
        if conn.relay is None:
            with self._locked() as core_server:
                for start in range(0, len(data), SLICE):
                    if start:
                        self._run_posted()
                    end = start + SLICE
                    core_server.receive_data(conn.id, data[start:end], time.monotonic())
                    self._carry_out()
                    if conn.relay is not None:  # handed over: the rest goes to the link
                        data = data[end:]
                        break
        if conn.relay is not None and data and not conn.relay.send(data):
            conn.kill()

    # -- the writer's reports -------------------------------------------------------------

    def _sent(self, conn: Conn, size: int) -> None:
        """``size`` bytes of ``conn``'s plaintext are written (on the writer thread)."""
        with conn.lock:
            conn.buffered -= size
            conn.written += size
            resume = conn.throttled and conn.buffered < self._low_water
            if resume:
                conn.throttled = False
            if conn.buffered <= self._read_stop:
                conn.readable.notify()
            # While the core watches, every write is reported, not only the one that empties
            # the buffer: a consumer kept busy would otherwise wait for its acks (§8.3).
            report = conn.watching
            if not conn.buffered:
                conn.watching = False
            written = conn.written
        if resume:
            self._post(lambda: self._core.set_writable(conn.id, True, time.monotonic()))
        if report:
            self._post(lambda: self._core.flushed(conn.id, written, time.monotonic()))

    # -- the core lock --------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[core.Server]:
        """Hold the core lock; on the way out carry out the actions and run posted calls."""
        self._lock.acquire()
        try:
            self._run_posted()
            yield self._core
            self._carry_out()
        finally:
            self._unlock()

    def _post(self, call: Callable[[], None]) -> None:
        """Have ``call`` (a core call) run under the lock soon, by whoever holds it."""
        self._posted.append(call)
        if self._lock.acquire(blocking=False):
            self._run_posted()
            self._unlock()

    def _run_posted(self) -> None:
        """Run the posted core calls, carrying out the actions of each. With the lock held."""
        posted = self._posted
        while posted:
            call = posted.popleft()
            try:
                call()
            except Exception:
                log.exception("core call failed")
            self._carry_out()

    def _unlock(self) -> None:
        """Release the lock, unless a call was posted meanwhile: a thread that found the lock
        taken left it to us, so run it (this check comes after the release, which comes after
        that thread's append)."""
        lock, posted = self._lock, self._posted
        while True:
            lock.release()
            if not posted or not lock.acquire(blocking=False):
                return
            self._run_posted()

    # -- carrying out the core's actions --------------------------------------------------

    def _carry_out(self) -> None:
        """Do what the core asked, then re-arm the timer. Call with ``_lock`` held."""
        core_server = self._core
        conns = self._conns
        while True:
            again = False
            for action in core_server.actions():
                if isinstance(action, Send):
                    conn = conns.get(action.conn)
                    if conn is not None and self._push(conn, action.data):
                        core_server.set_writable(conn.id, False, time.monotonic())
                        again = True
                elif isinstance(action, WriteBatch):
                    self._batches.put(action.batch)
                elif isinstance(action, ReadMessages | FindKey):
                    if self._reader.carry_out(action, core_server, time.monotonic()):
                        again = True
                elif isinstance(action, Locate | ClusterStatus):
                    if self._cluster is not None:
                        self._cluster.carry_out(action)
                elif isinstance(action, Relay):
                    conn = conns.get(action.conn)
                    if conn is not None:
                        self._relay(conn, action)
                elif isinstance(action, CloseTransport):
                    conn = conns.get(action.conn)
                    if conn is not None:
                        self._closed(conn)
                elif isinstance(action, PauseReading):
                    conn = conns.get(action.conn)
                    if conn is not None:
                        with conn.lock:
                            conn.paused = True
                elif isinstance(action, ResumeReading):
                    conn = conns.get(action.conn)
                    if conn is not None:
                        with conn.lock:
                            conn.paused = False
                            conn.readable.notify()
                elif isinstance(action, WatchFlush):
                    conn = conns.get(action.conn)
                    if conn is not None:
                        self._watch(conn)
            if not again:
                break
        self._rearm(core_server.next_deadline())

    def _push(self, conn: Conn, data: bytes) -> bool:
        """Queue ``data`` for the writer; True if that made the connection not writable."""
        with conn.lock:
            if conn.closing:
                return False
            conn.out.append(data)
            conn.buffered += len(data)
            throttle = not conn.throttled and conn.buffered > self._high_water
            if throttle:
                conn.throttled = True
        self._writer.wake(conn)
        return throttle

    def _watch(self, conn: Conn) -> None:
        """``WatchFlush``: report at once if the buffer is empty, else as the writer empties
        it (``_sent``). Called with the core lock held, so the report is posted."""
        with conn.lock:
            conn.watching = bool(conn.buffered)
            written = None if conn.watching else conn.written
        if written is not None:
            self._post(lambda: self._core.flushed(conn.id, written, time.monotonic()))

    def _closed(self, conn: Conn) -> None:
        """``CloseTransport``: the writer flushes and shuts; force it after a while."""
        with conn.lock:
            if conn.closing:
                return
            conn.closing = True
            conn.readable.notify()
        self._writer.wake(conn)
        deadline = time.monotonic() + CLOSE_TIMEOUT
        with self._timer_cond:
            heapq.heappush(self._closes, (deadline, next(self._close_order), conn))
            if deadline < self._wake_at:
                self._wake_at = deadline
                self._timer_cond.notify()

    # -- the store writer -----------------------------------------------------------------

    def _store_loop(self) -> None:
        store = self._store
        while True:
            batch = self._batches.get()
            if batch is None:
                return
            try:
                store.write(batch)
            except StoreError as exc:
                log.error("%s", exc)
                self._post(functools.partial(self._batch_failed, str(exc)))
            else:
                self._post(self._batch_written)

    def _batch_written(self) -> None:
        self._core.batch_written(time.monotonic())

    def _batch_failed(self, reason: str) -> None:
        self._core.batch_failed(reason, time.monotonic())

    # -- the timer ------------------------------------------------------------------------

    def _rearm(self, deadline: float) -> None:
        """Make the timer wake by ``deadline``. Called with ``_lock`` held."""
        if deadline < self._wake_at:
            with self._timer_cond:
                if deadline < self._wake_at:
                    self._wake_at = deadline
                    self._timer_cond.notify()

    def _timer_loop(self) -> None:
        cond = self._timer_cond
        while True:
            with cond:
                while True:
                    if self._timer_stop:
                        return
                    delay = self._wake_at - time.monotonic()
                    if delay <= 0:
                        break
                    cond.wait(None if delay == math.inf else delay)
                self._wake_at = math.inf
                now = time.monotonic()
                due: list[Conn] = []
                while self._closes and self._closes[0][0] <= now:
                    due.append(heapq.heappop(self._closes)[2])
                if self._closes:
                    self._wake_at = self._closes[0][0]
            for conn in due:
                if not conn.done:
                    log.debug("connection %d: forcing the close", conn.id)
                    conn.kill()
            self._post(self._fire)

    def _fire(self) -> None:
        self._core.handle_timer(time.monotonic())

    # -- shutting down --------------------------------------------------------------------

    def _close(self) -> None:
        """The shutdown (``FrontDoor.run`` closed the listener as it returned): see
        ``serve_forever``."""
        if not self._started:
            self._front_door.close()
            self._writer.stop(0.0)
        else:
            with self._locked() as core_server:
                core_server.shutdown(time.monotonic())
            self._wait_for_clients()
            with self._locked():
                conns = list(self._conns.values())
            for conn in conns:
                conn.kill()
            deadline = time.monotonic() + JOIN_TIMEOUT
            with self._registry_lock:
                readers = list(self._readers)
            for thread in readers:
                thread.join(max(0.0, deadline - time.monotonic()))
            writer_done = self._writer.stop(max(0.0, deadline - time.monotonic()))
            self._batches.put(None)
            self._store_thread.join(max(0.0, deadline - time.monotonic()))
            with self._timer_cond:
                self._timer_stop = True
                self._timer_cond.notify()
            self._timer_thread.join(max(0.0, deadline - time.monotonic()))
            left = [t.name for t in (*readers, self._store_thread, self._timer_thread)
                    if t.is_alive()]
            if not writer_done:
                left.append("jackrabbit-writer")
            if left:
                log.warning("threads still running at exit: %s", ", ".join(left))
            if self._store_thread.is_alive():
                return  # closing the store under a running write would fail
        if self._cluster is not None:
            self._cluster.close()
        self._reader.close()
        self._store.close()  # in a cluster: hands the queues over at once

    def _wait_for_clients(self) -> None:
        """Wait, at most ``SHUTDOWN_TIMEOUT``, for the clients to finish the close handshake
        and the last batch to be written; drop each connection that stalls on the way (no
        byte in or out for ``SHUTDOWN_STALL``): it does not read, so it never will."""
        started = time.monotonic()
        deadline = started + SHUTDOWN_TIMEOUT
        with self._registry_lock:
            # Readers notify as they end; the last batch and stalls are polled for.
            while not self._quiet() and (now := time.monotonic()) < deadline:
                if now - started >= SHUTDOWN_STALL:
                    with self._locked():
                        stalled = [
                            conn
                            for conn in self._conns.values()
                            if now - conn.progress >= SHUTDOWN_STALL
                        ]
                    for conn in stalled:
                        log.debug("connection %d: no close from the peer", conn.id)
                        conn.kill()
                self._settled.wait(min(0.05, max(0.0, deadline - now)))

    def _quiet(self) -> bool:
        """No client left and nothing left to write. Called with ``_registry_lock`` held."""
        if self._readers:
            return False
        with self._locked() as core_server:
            return core_server.idle
