"""``jackrabbit_asyncio.link.Link`` on its own: one accepted socket with real TLS, its owner a
recorder, its peer an asyncio TLS client that reads only when told to."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

import pytest

from jackrabbit_asyncio.link import (
    HIGH_WATER,
    MIN_SLICE,
    RECORD,
    TURN_BUDGET,
    Link,
    Phase,
    Shared,
)

from .conftest import HOST, Certs, eventually, run

pytestmark = pytest.mark.timeout(60)


@dataclass
class Owner:
    """Records what the link reports; ``handling`` is how long each ``received`` takes."""

    handling: float = 0.0
    received_sizes: list[int] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    events: list[str] = field(default_factory=list)
    wrote_calls: int = 0

    def established(self, link: Link) -> None:
        self.events.append("established")

    def received(self, link: Link, data: bytes) -> None:
        self.received_sizes.append(len(data))
        self.data += data
        if self.handling:
            time.sleep(self.handling)  # a costly request, as the core might take

    def ended(self, link: Link) -> None:
        self.events.append("ended")

    def writable(self, link: Link, writable: bool) -> None:
        self.events.append(f"writable={writable}")

    def wrote(self, link: Link) -> None:
        self.wrote_calls += 1

    def lingering(self, link: Link) -> None:
        self.events.append("lingering")

    def gone(self, link: Link) -> None:
        self.events.append("gone")


@dataclass
class Pair:
    link: Link
    owner: Owner
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


def _server_context(certs: Certs) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.chain, certs.key)
    return context


@asynccontextmanager
async def linked(certs: Certs, owner: Owner, *, small_buffers: bool = False) -> AsyncIterator[Pair]:
    """A ``Link`` for one accepted connection, TLS done, and the client's streams. With
    ``small_buffers`` both kernels buffer little, so a peer that does not read is felt soon."""
    loop = asyncio.get_running_loop()
    with socket.create_server((HOST, 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        raw = socket.socket()
        if small_buffers:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        raw.setblocking(False)
        await loop.sock_connect(raw, (HOST, port))
        accepted, _ = await loop.sock_accept(listener)
    accepted.setblocking(False)
    if small_buffers:
        accepted.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    link = Link(Shared(loop, _server_context(certs), owner), accepted, loop.time())
    link.start()
    client = ssl.create_default_context(cafile=certs.ca)
    reader, writer = await asyncio.open_connection(sock=raw, ssl=client, server_hostname=HOST)
    await eventually(lambda: owner.events == ["established"])
    try:
        yield Pair(link, owner, reader, writer)
    finally:
        link.abort()
        writer.close()


def test_written_counts_only_what_the_kernel_took(certs: Certs) -> None:
    """While the peer does not read, ``written`` stays behind ``handed`` by what is queued,
    the owner hears the buffer is full, then, as the peer reads, that it drained and (watched)
    that more was written, until ``written == handed``."""

    async def scenario() -> None:
        owner = Owner()
        async with linked(certs, owner, small_buffers=True) as pair:
            link = pair.link
            link.watched = True
            transport = cast(asyncio.Transport, pair.writer.transport)
            transport.pause_reading()
            payload = bytes(range(256)) * (4 * 4096)  # 4 MiB
            link.write(payload)
            assert link.handed == len(payload)
            assert link.written < link.handed - HIGH_WATER
            assert link.buffered > HIGH_WATER
            assert owner.events[-1] == "writable=False"
            transport.resume_reading()
            got = await asyncio.wait_for(pair.reader.readexactly(len(payload)), 15)
            assert got == payload
            await eventually(lambda: link.written == link.handed)
            assert link.buffered == 0
            assert owner.events[-1] == "writable=True"
            assert owner.wrote_calls > 0

    run(scenario())


def test_paused_link_reads_nothing_from_the_socket(certs: Certs) -> None:
    """Paused, the link hands nothing on and leaves the peer's bytes in the kernel (the TLS
    layer does not read ahead either); resumed, everything arrives in order."""

    async def scenario() -> None:
        owner = Owner()
        async with linked(certs, owner, small_buffers=True) as pair:
            pair.link.pause_reading()
            payload = b"0123456789abcdef" * (1024 * 1024)  # 16 MiB
            pair.writer.write(payload)
            await eventually(lambda: _kernel_holds_bytes(pair.link.sock))
            await asyncio.sleep(0.3)  # a quiet window: nothing may be read meanwhile
            assert not owner.data
            assert _kernel_holds_bytes(pair.link.sock)
            pair.link.resume_reading()
            await eventually(lambda: len(owner.data) == len(payload))
            assert owner.data == payload

    run(scenario())


def _kernel_holds_bytes(sock: socket.socket) -> bool:
    """Bytes from the peer wait in the kernel, unread."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False


def test_a_slow_owner_gets_small_slices_and_a_fast_one_whole_records(certs: Certs) -> None:
    """Each slice the owner takes longer than ``TURN_BUDGET`` over halves the next one, down
    to ``MIN_SLICE``; once the owner is quick again the slices grow back to whole TLS
    records (``RECORD``) and more."""

    async def scenario() -> None:
        owner = Owner(handling=TURN_BUDGET * 1.5)
        async with linked(certs, owner) as pair:
            slow = 64 * 1024
            pair.writer.write(b"x" * slow)
            await eventually(lambda: len(owner.data) == slow)
            sizes = owner.received_sizes
            assert MIN_SLICE in sizes, sizes
            assert max(sizes[sizes.index(MIN_SLICE) :]) == MIN_SLICE, sizes
            owner.handling = 0.0
            before = len(sizes)
            pair.writer.write(b"y" * (1024 * 1024))
            await eventually(lambda: len(owner.data) == slow + 1024 * 1024)
            assert max(owner.received_sizes[before:]) >= RECORD

    run(scenario())


def test_close_sends_what_is_queued_then_ends(certs: Certs) -> None:
    """``close()`` after a large write: the peer gets every byte, then EOF; the owner hears
    ``gone`` once the peer has closed too."""

    async def scenario() -> None:
        owner = Owner()
        async with linked(certs, owner) as pair:
            payload = b"z" * (3 * 1024 * 1024)
            pair.link.write(payload)
            pair.link.close()
            assert pair.link.phase in (Phase.CLOSING, Phase.LINGER)
            got = await asyncio.wait_for(pair.reader.read(), 15)  # up to EOF
            assert got == payload
            pair.writer.close()
            await eventually(lambda: owner.events[-1:] == ["gone"])
            # The owner closed it: no "ended"; "lingering" once all was sent with a FIN.
            assert owner.events == ["established", "lingering", "gone"]

    run(scenario())


def test_garbage_instead_of_tls_never_reaches_the_owner(certs: Certs) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        owner = Owner()
        with socket.create_server((HOST, 0)) as listener:
            client = socket.create_connection(listener.getsockname())
            accepted, _ = listener.accept()
        with client:
            accepted.setblocking(False)
            link = Link(Shared(loop, _server_context(certs), owner), accepted, loop.time())
            link.start()
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await eventually(lambda: owner.events == ["gone"])
            assert link.phase is Phase.DONE

    run(scenario())
