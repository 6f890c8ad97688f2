"""The asyncio server's timers and plain HTTP: heartbeats drop silent peers (and promote a
standby), live clients stay, ``/healthz`` answers on the TLS port."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import msgpack
import pytest

from jackrabbit_core.client import ClientProtocol, Opened, Subscribed

from .conftest import Certs, eventually, run, running

pytestmark = pytest.mark.timeout(60)

HEARTBEAT = 0.2


class SilentPeer:
    """A v1 client that upgrades, maybe takes, and then never answers anything (no pongs)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        #: Loop time of the last byte it sent: its silence starts here.
        self.silent_since = asyncio.get_running_loop().time()

    @classmethod
    async def connect(cls, port: int, ca: str, queue: str, *, take: bool) -> SilentPeer:
        context = ssl.create_default_context(cafile=ca)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        protocol = ClientProtocol(f"127.0.0.1:{port}", f"/queues/{queue}")
        writer.write(protocol.data_to_send())
        wanted = Subscribed if take else Opened
        seen: list[object] = []
        while not any(isinstance(event, wanted) for event in seen):
            data = await reader.read(65536)
            assert data, "closed during the handshake"
            protocol.receive_data(data)
            for event in protocol.events_received():
                seen.append(event)
                if isinstance(event, Opened) and take:
                    protocol.take()
            writer.write(protocol.data_to_send())
        return cls(reader, writer)

    async def wait_dropped(self) -> float:
        """Read (never answering) until the server hangs up; return how long after its last
        byte that was."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass
        elapsed = asyncio.get_running_loop().time() - self.silent_since
        self.writer.close()
        return elapsed


def test_silent_peer_is_dropped_and_a_standby_promoted(certs: Certs, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(certs, tmp_path / "db", heartbeat=HEARTBEAT) as server:
            port = server.server.port
            silent = await SilentPeer.connect(port, certs.ca, "hb", take=True)
            standby = await server.client("hb")
            messages = await standby.take()
            assert standby.role == "standby"
            producer = await server.client("hb")
            await producer.add(b"for the silent one")
            elapsed = await silent.wait_dropped()
            # Silent for two intervals: dropped (allow for the sweep period and a busy host).
            assert 2 * HEARTBEAT * 0.75 <= elapsed < 2 * HEARTBEAT + 10
            first = await asyncio.wait_for(anext(aiter(messages)), 10)
            assert (first.seq, first.redelivered) == (1, True)
            assert str(standby.role) == "active"
            await standby.close()
            await producer.close()

    run(scenario())


def test_a_live_client_outlives_many_heartbeats(certs: Certs, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(certs, tmp_path / "db", heartbeat=HEARTBEAT) as server:
            client = await server.client("alive")
            await client.take()
            # Only the passing of time can show that nothing happens.
            await asyncio.sleep(6 * HEARTBEAT)
            assert client.role == "active" and client.close_code is None
            assert await client.add(b"still here") == 1
            await client.close()
            assert client.close_code == 1000

    run(scenario())


def test_healthz_on_the_tls_port(certs: Certs, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(certs, tmp_path / "db") as server:
            context = ssl.create_default_context(cafile=certs.ca)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.server.port, ssl=context
            )
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            response = await reader.read()  # the server closes after answering
            writer.close()
            assert response.startswith(b"HTTP/1.1 200 ")
            assert response.endswith(b"ok\n")

    run(scenario())


def test_shutdown_waits_for_close_handshakes_not_for_tcp_closes(
    certs: Certs, tmp_path: Path
) -> None:
    """A client that answers the server's 1001 close frame but then keeps its socket open
    does not hold the shutdown: once the handshake is done and the server has sent all it
    had (with a FIN), the server is finished with it; the bound is 5 s."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with running(certs, tmp_path / "db") as server:
            peer = await SilentPeer.connect(server.server.port, certs.ca, "stay", take=False)
            started = loop.time()
            closing = asyncio.ensure_future(server.server.shutdown())
            frame = await asyncio.wait_for(peer.reader.readexactly(4), 10)
            assert frame[0] == 0x88 and frame[2:4] == (1001).to_bytes(2, "big")
            echo = bytes([0x88, 0x82]) + b"\0\0\0\0" + (1001).to_bytes(2, "big")
            peer.writer.write(echo)  # masked with zeros: the code as is
            await asyncio.wait_for(closing, 10)
            assert loop.time() - started < 2.0
            peer.writer.close()

    run(scenario())


def test_original_consumer_acks_only_what_reached_the_kernel(certs: Certs, tmp_path: Path) -> None:
    """An original-dialect consumer acknowledges by receiving (protocol §8.3): a delivery
    counts once its bytes are written to the socket, not when handed to the shell. This one
    stops reading with hundreds of deliveries still in the server's own buffer; when it
    drops, the v1 standby gets every one of those again (``redelivered``), and nothing after
    the last message that reached the kernel is missing."""
    total, size = 10_000, 1000

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with running(certs, tmp_path / "db") as server:
            producer = await server.client("orig")
            for start in range(0, total, 1000):
                await asyncio.gather(
                    *(producer.add(b"m" * size) for _ in range(start, start + 1000))
                )
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            raw.setblocking(False)
            await loop.sock_connect(raw, ("127.0.0.1", server.server.port))
            context = ssl.create_default_context(cafile=certs.ca)
            reader, writer = await asyncio.open_connection(
                sock=raw, ssl=context, server_hostname="127.0.0.1"
            )
            writer.write(
                b"GET /queues/orig HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            await reader.readuntil(b"\r\n\r\n")
            take = msgpack.packb({"command": {1: None}})
            writer.write(bytes([0x82, 0x80 | len(take)]) + b"\0\0\0\0" + take)
            link = max(server.server._by_id.items())[1]  # the newest: the original consumer
            # It has stopped reading: deliveries pile up in the server's buffer.
            await eventually(lambda: link.buffered > 256 * 1024)
            standby = await server.client("orig")
            messages = await standby.take()
            unwritten = link.buffered  # bytes of deliveries the kernel has not taken
            writer.transport.abort()
            got = []
            async for message in messages:
                got.append(message)
                await message.ack()
                if message.seq == total:
                    break
            seqs = [m.seq for m in got]
            assert seqs == list(range(seqs[0], total + 1))
            assert seqs[0] > 1  # what reached the kernel counted as acknowledged
            redelivered = sum(m.redelivered for m in got)
            assert redelivered >= unwritten // (size + 64)
            await standby.close()
            await producer.close()

    run(scenario())
