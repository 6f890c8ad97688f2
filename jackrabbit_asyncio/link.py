"""One client connection of the asyncio shell: TLS run by hand over a non-blocking socket.

Why not ``loop.create_server(ssl=...)``: asyncio's TLS layer gives every connection a 256 KiB
read buffer from the moment it is accepted (``asyncio.sslproto``), so a connection that never
finishes TLS cost about 320 KB and an idle one about 300 KB; and its layered buffers hide when
bytes reach the kernel, which an original-dialect consumer's acknowledgement hangs on
(protocol §8.3). A ``Link`` owns its socket (``loop.add_reader`` / ``add_writer``), an
``ssl.SSLObject`` over two ``ssl.MemoryBIO``\\ s, and one queue of encrypted bytes:

- Reads go into one buffer shared by every link of a server (the loop runs one callback at a
  time, and the bytes are copied into the TLS object at once), so a link holds no read buffer
  of its own. The TLS object is made at the first byte: a silent connection holds its socket
  and this object, nothing more.
- Plaintext is handed on in slices sized so that one connection's share of a turn of the loop
  stays near ``TURN_BUDGET`` seconds whatever it sends: a flood of tiny frames, costly per
  byte, gets small slices; bulk data gets whole records. While a slice is waiting, nothing more
  is read from the socket.
- Writes are encrypted at once, a record at a time (a ``MemoryBIO`` keeps the capacity of the
  most it ever held), and the records sent in one system call; what the kernel does not take
  waits in the queue, so ``buffered`` is everything this connection holds for its peer, and
  ``written`` counts the bytes given to ``write`` whose records are all in the kernel.
- Reading stops while the owner says so (``pause_reading``), while more than the budget's
  ``read_stop`` bytes wait for the peer (whatever it sends, a peer that never reads cannot
  grow our memory), and at ``close()``; once everything is sent, only the peer's EOF is
  awaited (at most ``CLOSE_TIMEOUT`` seconds from the ``close()`` in all).

The water marks are the ``--memory-budget``'s shares and the timeouts
``jackrabbit_host.limits``', as in the threads shell.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import itertools
import logging
import socket
import ssl
import time
from typing import Final, Protocol

from jackrabbit_core.config import Budget
from jackrabbit_host.limits import CLOSE_TIMEOUT

log = logging.getLogger("jackrabbit.asyncio")

#: Bytes asked of a socket per read: about one TLS record (at most 16 KiB of plaintext). The
#: TLS object's input buffer keeps the capacity of the most it held: at most two of these.
READ_SIZE: Final = 17 * 1024
#: Plaintext encrypted per ``SSLObject.write``: one full record.
RECORD: Final = 16 * 1024
#: Seconds one connection's slice of plaintext may take to be handled, about: past it the next
#: slice is halved, well under it doubled, between ``MIN_SLICE`` and ``MAX_SLICE`` bytes.
TURN_BUDGET: Final = 0.002
MIN_SLICE: Final = 256
MAX_SLICE: Final = 32 * 1024
#: Queued buffers handed to one ``sendmsg``.
SEND_BATCH: Final = 64


class Phase(enum.Enum):
    """Where a link is in its life."""

    HANDSHAKE = "handshake"  #: accepted; the TLS handshake has not finished
    OPEN = "open"  #: application data flows; the owner knows it
    FAILED = "failed"  #: a send failed; the link is aborted on the next turn
    CLOSING = "closing"  #: ``close()`` was called: sending what is queued, reading nothing
    LINGER = "linger"  #: all sent, with a FIN: the peer's EOF is awaited, what it sends dropped
    DONE = "done"  #: the socket is closed


class Events(Protocol):
    """What a link tells its owner (the server), each on the loop."""

    def established(self, link: Link) -> None:
        """The TLS handshake is done: the link is ``OPEN``."""

    def received(self, link: Link, data: bytes) -> None:
        """Plaintext from the peer of an ``OPEN`` link."""

    def ended(self, link: Link) -> None:
        """The peer of an ``OPEN`` link closed or vanished; nothing more will be received."""

    def writable(self, link: Link, writable: bool) -> None:
        """``buffered`` went over the high water mark (False) or back under the low (True)."""

    def wrote(self, link: Link) -> None:
        """``written`` moved on a link whose ``watched`` is set."""

    def lingering(self, link: Link) -> None:
        """A closed link has sent everything: only the peer's EOF is awaited (``LINGER``)."""

    def gone(self, link: Link) -> None:
        """The socket is closed (after ``ended`` if the link was ``OPEN``)."""


class Shared:
    """What every link of one server shares: the loop, the TLS context, the owner, the read
    buffer and the budget's limits on what a link holds for its peer."""

    __slots__ = ("buffer", "context", "events", "high_water", "loop", "low_water", "read_stop")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        context: ssl.SSLContext,
        events: Events,
        budget: Budget | None = None,
    ) -> None:
        self.loop = loop
        self.context = context
        self.events = events
        self.buffer = memoryview(bytearray(READ_SIZE))
        budget = budget or Budget.of()
        self.high_water = budget.high_water
        self.low_water = budget.low_water
        self.read_stop = budget.read_stop


class Link:
    """One accepted connection; see the module docstring."""

    __slots__ = (
        "_eof",
        "_fd",
        "_incoming",
        "_more",
        "_outgoing",
        "_paused",
        "_queue",
        "_reading",
        "_shared",
        "_slice",
        "_soon",
        "_timer",
        "_tls",
        "_unwritable",
        "_writing",
        "accepted_at",
        "buffered",
        "handed",
        "heard_at",
        "id",
        "phase",
        "sock",
        "watched",
        "written",
    )

    def __init__(self, shared: Shared, sock: socket.socket, now: float) -> None:
        self._shared = shared
        self.sock = sock
        self._fd = sock.fileno()
        #: Loop time of the accept.
        self.accepted_at = now
        #: Loop time of the peer's last bytes during the handshake (None: it sent none).
        self.heard_at: float | None = None
        self.phase = Phase.HANDSHAKE
        #: The owner's name for it (the core's connection id), set once ``OPEN``.
        self.id = 0
        self._tls: ssl.SSLObject | None = None
        self._incoming: ssl.MemoryBIO | None = None
        self._outgoing: ssl.MemoryBIO | None = None
        #: Encrypted bytes the kernel has not taken, each with ``handed`` as it was once they
        #: are sent.
        self._queue: collections.deque[tuple[memoryview, int]] = collections.deque()
        #: Bytes in ``_queue``.
        self.buffered = 0
        #: Bytes given to ``write`` in all, and how many of them are in the kernel.
        self.handed = 0
        self.written = 0
        #: The owner wants ``wrote`` events.
        self.watched = False
        self._paused = False  # the owner asked (``pause_reading``)
        self._reading = False  # registered with the loop's selector (by fd: cheaper)
        self._writing = False
        self._more = False  # the TLS object may hold plaintext not handed on yet
        self._eof = False  # the peer closed its side
        self._unwritable = False
        self._slice = MAX_SLICE
        self._soon: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None

    def peercert(self) -> dict[str, object] | None:
        """The peer's certificate as ``ssl.SSLObject.getpeercert()`` gives it, once the
        handshake is done: None when it presented none, verified when it is there."""
        return None if self._tls is None else self._tls.getpeercert()  # type: ignore[return-value]

    def start(self) -> None:
        """Start the TLS handshake with whatever the peer has sent already."""
        self._update_reading()
        self.look()

    def look(self) -> None:
        """Read what the peer has sent, now rather than on the loop's next turn (a silent
        handshake gets one last look before it is dropped for a newcomer)."""
        self._on_readable()

    # -- reading --------------------------------------------------------------------------

    def pause_reading(self) -> None:
        """Read nothing more from the socket until ``resume_reading``."""
        self._paused = True
        self._update_reading()

    def resume_reading(self) -> None:
        self._paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        """Register with the selector exactly while the socket should be read, and schedule
        the next slice of plaintext already decrypted (meanwhile the socket is not read: a
        readable event finds ``_more`` set and leaves the bytes in the kernel)."""
        phase = self.phase
        if phase is Phase.OPEN:
            active = not self._paused and self.buffered <= self._shared.read_stop
        else:
            active = phase in (Phase.HANDSHAKE, Phase.LINGER) and not self._eof
        loop = self._shared.loop
        if active != self._reading:
            if active:
                loop.add_reader(self._fd, self._on_readable)
            else:
                loop.remove_reader(self._fd)
            self._reading = active
        if active and self._more and self._soon is None:
            self._soon = loop.call_soon(self._continue)

    def _on_readable(self) -> None:
        if self._more:
            return  # a slice already decrypted goes first (``_continue``)
        buffer = self._shared.buffer
        try:
            count = self.sock.recv_into(buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        if not count:
            self._peer_eof()
            return
        phase = self.phase
        if phase is not Phase.HANDSHAKE and phase is not Phase.OPEN:
            return  # lingering: what the peer still sends is dropped
        if self._tls is None:
            self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            self._tls = self._shared.context.wrap_bio(
                self._incoming, self._outgoing, server_side=True
            )
        assert self._incoming is not None
        self._incoming.write(buffer[:count])
        if phase is Phase.HANDSHAKE:
            self.heard_at = self._shared.loop.time()
            self._handshake()
        else:
            self._read_plaintext()

    def _handshake(self) -> None:
        assert self._tls is not None
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._send_tls()
            return
        except ssl.SSLError as exc:  # not TLS, an old version, no shared cipher...
            self._send_tls()  # the alert, if the kernel takes it now
            self._fail(exc)
            return
        self._send_tls()
        if self.phase is not Phase.HANDSHAKE:
            return  # the send failed
        self.phase = Phase.OPEN
        self._shared.events.established(self)
        if self.phase is Phase.OPEN:
            self._read_plaintext()  # application data that came with the handshake

    def _continue(self) -> None:
        self._soon = None
        if self.phase is Phase.OPEN and self._more and not self._paused:
            self._read_plaintext()

    def _read_plaintext(self) -> None:
        """Hand the owner one slice of what the TLS object can decrypt."""
        tls = self._tls
        assert tls is not None
        want = self._slice
        chunks: list[bytes] = []
        got = 0
        eof = False
        try:
            while got < want:
                chunk = tls.read(want - got)
                if not chunk:
                    eof = True
                    break
                chunks.append(chunk)
                got += len(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:  # the peer's close_notify
            eof = True
        except ssl.SSLError as exc:
            self._fail(exc)
            return
        self._send_tls()  # a post-handshake message may want an answer
        if self.phase is not Phase.OPEN:
            return  # the send failed
        self._more = got >= want
        if got:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            started = time.perf_counter()
            self._shared.events.received(self, data)
            spent = time.perf_counter() - started
            if spent > TURN_BUDGET:
                self._slice = max(MIN_SLICE, self._slice // 2)
            elif spent < TURN_BUDGET / 4:
                self._slice = min(MAX_SLICE, self._slice * 2)
        if eof and self.phase is Phase.OPEN:
            self._peer_eof()
        else:
            self._update_reading()

    def _peer_eof(self) -> None:
        self._eof = True
        self._more = False
        phase = self.phase
        if phase is Phase.HANDSHAKE:
            self.abort()
            return
        self._update_reading()
        if phase is Phase.OPEN:
            self._shared.events.ended(self)
            self.close()  # if the owner did not
        elif phase is Phase.LINGER:
            self._finish()

    # -- writing --------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Encrypt ``data`` and send it (or queue what the kernel does not take). Ignored
        unless the link is ``OPEN``."""
        if self.phase is not Phase.OPEN:
            return
        tls, outgoing = self._tls, self._outgoing
        assert tls is not None and outgoing is not None
        base = self.handed
        size = len(data)
        self.handed = base + size
        if size <= RECORD:
            try:
                tls.write(data)
            except ssl.SSLError as exc:
                self._fail_later(exc)
                return
            self._push([(outgoing.read(), base + size)])
            return
        view = memoryview(data)
        records: list[tuple[bytes, int]] = []
        try:
            for start in range(0, size, RECORD):
                tls.write(view[start : start + RECORD])
                records.append((outgoing.read(), base + min(start + RECORD, size)))
        except ssl.SSLError as exc:
            self._fail_later(exc)
            return
        self._push(records)

    def _send_tls(self) -> None:
        """Send what the TLS object itself wants sent (handshake, alerts, tickets)."""
        outgoing = self._outgoing
        if outgoing is not None and outgoing.pending:
            self._push([(outgoing.read(), self.handed)])

    def _push(self, records: list[tuple[bytes, int]]) -> None:
        """Send ``records`` (encrypted bytes, each with what ``written`` becomes once it is
        sent) in one system call, or queue what the kernel does not take."""
        queue = self._queue
        if not queue:
            try:
                if len(records) == 1:
                    sent = self.sock.send(records[0][0])
                else:
                    sent = self.sock.sendmsg([data for data, _ in records])
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fail_later(exc)
                return
            for index, (data, handed) in enumerate(records):
                if sent < len(data):
                    queue.append((memoryview(data)[sent:], handed))
                    self.buffered += len(data) - sent
                    records = records[index + 1 :]
                    break
                sent -= len(data)
                self.written = handed
            else:
                return
        for data, handed in records:
            queue.append((memoryview(data), handed))
            self.buffered += len(data)
        if not self._writing:
            self._shared.loop.add_writer(self._fd, self._on_writable)
            self._writing = True
        shared = self._shared
        if not self._unwritable and self.buffered > shared.high_water:
            self._unwritable = True
            shared.events.writable(self, False)
        if self.buffered > shared.read_stop and self._reading:
            self._update_reading()

    def _on_writable(self) -> None:
        queue = self._queue
        try:
            sent = self.sock.sendmsg([view for view, _ in itertools.islice(queue, SEND_BATCH)])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        self.buffered -= sent
        while sent:
            view, handed = queue[0]
            if len(view) > sent:
                queue[0] = (view[sent:], handed)
                break
            sent -= len(view)
            queue.popleft()
            self.written = handed
        if not queue:
            self._shared.loop.remove_writer(self._fd)
            self._writing = False
        shared = self._shared
        events = shared.events
        if self._unwritable and self.buffered <= shared.low_water:
            self._unwritable = False
            events.writable(self, True)
        if not self._reading and self.phase is Phase.OPEN:
            self._update_reading()  # reading may have stopped at ``read_stop``
        if self.watched:
            events.wrote(self)
        if not queue and self.phase is Phase.CLOSING:
            self._flushed_out()

    # -- the end --------------------------------------------------------------------------

    def close(self) -> None:
        """Send what is queued and a TLS ``close_notify``, then close the socket once the
        peer has closed its side (at most ``CLOSE_TIMEOUT`` seconds from now)."""
        if self.phase is not Phase.OPEN:
            return
        self.phase = Phase.CLOSING
        self._more = False
        tls = self._tls
        assert tls is not None
        try:
            tls.unwrap()
        except ssl.SSLWantReadError:
            pass  # expected: the peer's close_notify has not come
        except (ssl.SSLError, ValueError):
            pass  # the TLS state is broken: the socket closes all the same
        self._send_tls()
        if self.phase is not Phase.CLOSING:
            return
        self._timer = self._shared.loop.call_later(CLOSE_TIMEOUT, self.abort)
        self._update_reading()
        if not self._queue:
            self._flushed_out()

    def _flushed_out(self) -> None:
        """Closing, and everything is sent: half-close and wait for the peer's EOF, so that
        bytes it sends meanwhile (a pipelined request) are not answered with a reset that could
        destroy our last ones in its receive buffer."""
        if self._eof:
            self._finish()
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._finish()
            return
        self.phase = Phase.LINGER
        self._update_reading()
        self._shared.events.lingering(self)

    def abort(self) -> None:
        """Close the socket now, dropping whatever is queued."""
        phase = self.phase
        if phase is Phase.DONE:
            return
        self._close_socket()
        events = self._shared.events
        if phase in (Phase.OPEN, Phase.FAILED):
            events.ended(self)
        events.gone(self)

    def _finish(self) -> None:
        self._close_socket()
        self._shared.events.gone(self)

    def _fail(self, exc: OSError) -> None:
        if self.phase is not Phase.DONE:
            log.debug("connection %d (%s): %s", self.id, self.phase.value, exc)
            self.abort()

    def _fail_later(self, exc: OSError) -> None:
        """A send failed inside ``write``: abort on the next turn, not inside the owner's
        own call."""
        if self.phase is Phase.OPEN:
            self.phase = Phase.FAILED
            log.debug("connection %d: %s", self.id, exc)
            self._update_reading()
            self._shared.loop.call_soon(self.abort)
        elif self.phase is not Phase.FAILED:
            self._fail(exc)

    def _close_socket(self) -> None:
        loop = self._shared.loop
        if self._reading:
            loop.remove_reader(self._fd)
            self._reading = False
        if self._writing:
            loop.remove_writer(self._fd)
            self._writing = False
        for handle in (self._soon, self._timer):
            if handle is not None:
                handle.cancel()
        self._soon = self._timer = None
        self._queue.clear()
        self.buffered = 0
        self.sock.close()
        self.phase = Phase.DONE
        self._tls = self._incoming = self._outgoing = None
