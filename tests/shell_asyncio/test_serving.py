"""The asyncio server's timers and plain HTTP: heartbeats drop silent peers (and promote a
standby), live clients stay, ``/healthz`` answers on the TLS port."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from jackrabbit_core.client import ClientProtocol, Opened, Subscribed

from .conftest import Certs, run, running

pytestmark = pytest.mark.timeout(60)

HEARTBEAT = 0.2


class SilentPeer:
    """A v1 client that upgrades, maybe takes, and then never answers anything (no pongs)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

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
        """Read (never answering) until the server hangs up; return how long that took."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass
        elapsed = loop.time() - start
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
