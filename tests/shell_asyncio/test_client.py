"""The asyncio ``Client`` against an in-process asyncio server, over real TLS and RocksDB."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from jackrabbit_asyncio import Client, ClientError, ConnectionLost, Message
from jackrabbit_asyncio.commands import run_add, run_take
from jackrabbit_host.cli import AddCommand, TakeCommand

from .conftest import Certs, eventually, run, running

pytestmark = pytest.mark.timeout(60)


def test_concurrent_adds_are_pipelined(certs: Certs, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(certs, tmp_path / "db") as server:
            one = await server.client("pipe")
            two = await server.client("pipe")
            # Many tasks at once on each client, two clients on one queue.
            results = await asyncio.gather(
                *(one.add(b"a%d" % i) for i in range(1500)),
                *(two.add(b"b%d" % i) for i in range(500)),
            )
            assert sorted(results) == list(range(1, 2001))
            # Same key, many times, in flight together: one message.
            keyed = await asyncio.gather(*(one.add(b"k", key="once") for _ in range(20)))
            assert keyed == [2001] * 20
            assert await two.add(b"k", key="once") == 2001
            assert await two.add(b"next") == 2002
            await one.close()
            await two.close()

    run(scenario())


def test_take_and_ack_end_to_end(certs: Certs, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(certs, tmp_path / "db") as server:
            producer = await server.client("work")
            sent = [b"message %d" % i for i in range(25)]
            for data in sent:
                await producer.add(data)
            consumer = await server.client("work")
            subscription = await consumer.take(prefetch=10)
            assert consumer.role == "active" and consumer.epoch is not None
            got: list[Message] = []
            async for message in subscription:
                got.append(message)
                await message.ack()
                if len(got) == len(sent):
                    break
            assert [m.data for m in got] == sent
            assert [m.seq for m in got] == list(range(1, 26))
            assert not any(m.redelivered for m in got)
            await consumer.close()
            # Everything was acked: a new consumer sees only what comes next.
            again = await server.client("work")
            messages = again.take()
            await producer.add(b"fresh")
            first = await anext(aiter(messages))
            assert (first.seq, first.data, first.redelivered) == (26, b"fresh", False)
            await again.close()
            await producer.close()

    run(scenario())


def test_failover_and_handover(certs: Certs, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(certs, tmp_path / "db") as server:
            roles: list[tuple[str, int | None]] = []
            a = await server.client("fo")
            b = await server.client("fo", on_role=lambda role, epoch: roles.append((role, epoch)))
            c = await server.client("fo")
            await a.take(prefetch=100)
            b_messages = await b.take(prefetch=100)
            await c.take(prefetch=100)
            assert (a.role, b.role, c.role) == ("active", "standby", "standby")
            producer = await server.client("fo")
            for i in range(5):
                await producer.add(b"%d" % i)
            a_messages = a.take()
            held = [await anext(a_messages) for _ in range(5)]
            await held[1].ack()  # 1 and 2 are done; 3..5 are in a's hands
            await a.close()  # a goes away: b is promoted and gets 3..5 again
            redelivered = [await anext(b_messages) for _ in range(3)]
            assert [(m.seq, m.redelivered) for m in redelivered] == [
                (3, True), (4, True), (5, True),
            ]  # fmt: skip
            assert b.role == "active" and roles[-1][0] == "active"
            # A planned handover: b acks what it holds, then hands over to c.
            await redelivered[-1].ack()
            epoch = await b.handover()
            assert str(b.role) == "standby" and b.epoch == epoch
            await eventually(lambda: c.role == "active")
            with pytest.raises(ClientError) as refused:
                await b.handover()  # not active any more
            assert refused.value.code == "not_active"
            for client in (b, c, producer):
                await client.close()

    run(scenario())


def test_handover_without_standby_is_a_client_error(certs: Certs, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(certs, tmp_path / "db") as server:
            alone = await server.client("solo")
            await alone.take()
            with pytest.raises(ClientError) as refused:
                await alone.handover()
            assert refused.value.code == "no_standby"
            assert await alone.add(b"still open") == 1
            await alone.close()
            with pytest.raises(ConnectionLost):
                await alone.add(b"closed")

    run(scenario())


def test_upgrade_refused_and_unreachable(certs: Certs, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(certs, tmp_path / "db", max_connections=1) as server:
            first = await server.client()
            with pytest.raises(ConnectionLost) as refused:
                await server.client()  # over --max-connections: HTTP 503
            assert refused.value.code == "refused" and "503" in refused.value.message
            await first.close()
            port = server.server.port
        with pytest.raises(OSError):
            await Client.connect(f"wss://127.0.0.1:{port}", ca=certs.ca)

    run(scenario())


def test_reconnect_after_the_server_restarts(certs: Certs, tmp_path: Path) -> None:
    db = tmp_path / "db"

    async def scenario() -> None:
        roles: list[str] = []
        async with running(certs, db) as first:
            port = first.server.port
            producer = await first.client("rq", reconnect=True)
            consumer = await first.client(
                "rq", reconnect=True, on_role=lambda role, epoch: roles.append(role)
            )
            messages = await consumer.take(prefetch=10)
            for i in range(3):
                await producer.add(b"%d" % i)
            seen = [await anext(messages) for _ in range(3)]
            await seen[0].ack()  # 2 and 3 stay unacknowledged across the restart
            core = first.server._core
            await eventually(lambda: core.counters.acks == 1 and core.idle)
        # The server is down; an add made now waits for the reconnection.
        pending = asyncio.ensure_future(producer.add(b"after"))
        await asyncio.sleep(0.05)
        assert not pending.done()
        async with running(certs, db, port=port):
            assert await asyncio.wait_for(pending, 15) == 4
            again = [await anext(messages) for _ in range(3)]
            assert [m.seq for m in again] == [2, 3, 4]
            await seen[1].ack()  # from the old connection: ignored, no error
            await again[-1].ack()
            assert consumer.role == "active" and roles == ["active", "active"]
            await producer.close()
            await consumer.close()

    run(scenario())


def test_pending_adds_fail_when_the_connection_is_lost(certs: Certs, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(certs, tmp_path / "db") as server:
            client = await server.client()
            adds = [asyncio.ensure_future(client.add(b"x" * 1000)) for _ in range(200)]
            await asyncio.sleep(0)  # the frames are queued, not yet answered
            link = client._link
            assert link is not None and link.transport is not None
            link.transport.abort()
            outcomes = await asyncio.gather(*adds, return_exceptions=True)
            lost = [o for o in outcomes if isinstance(o, ConnectionLost)]
            assert lost and all(isinstance(o, int | ConnectionLost) for o in outcomes)
            assert isinstance(lost[0], ConnectionError)
            await client.close()

    run(scenario())


def test_terminal_commands(certs: Certs, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(certs, tmp_path / "db") as server:
            out = io.StringIO()
            add = AddCommand(server.url, "cli", certs.ca, ("one", "two"), None)
            assert await run_add(add, stdout=out) == 0
            piped = AddCommand(server.url, "cli", certs.ca, (), None)
            lines = io.StringIO("".join(f"line {i}\n" for i in range(100)))
            assert await run_add(piped, stdin=lines, stdout=out) == 0
            assert out.getvalue().split() == [str(i) for i in range(1, 103)]
            await (await server.client("cli")).add(b"\xff bytes")
            taken = io.StringIO()
            take = TakeCommand(server.url, "cli", certs.ca, prefetch=10, count=103)
            assert await run_take(take, stdout=taken) == 0
            printed = taken.getvalue().splitlines()
            assert printed[:2] == ["1\tone", "2\ttwo"]
            assert printed[2] == "3\tline 0" and printed[-1] == "103\t\ufffd bytes"

    run(scenario())


def test_large_pipelined_adds_wait_for_the_write_buffer(certs: Certs, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(certs, tmp_path / "db") as server:
            client = await server.client("big")
            link = client._link
            assert link is not None
            paused: list[bool] = []
            original = link.pause_writing

            def pause_writing() -> None:
                paused.append(True)
                original()

            link.pause_writing = pause_writing  # type: ignore[method-assign]
            payload = b"p" * 60_000
            seqs = await asyncio.gather(*(client.add(payload) for _ in range(150)))
            assert sorted(seqs) == list(range(1, 151))
            assert paused, "9 MB of adds never filled the 1 MiB write buffer"
            await client.close()

    run(scenario())
