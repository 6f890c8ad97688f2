"""What only the asyncio ``Client`` does: it waits for the transport's write buffer to drain.
The scenarios both clients share run against both in ``tests/clients``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .conftest import Certs, run, running

pytestmark = pytest.mark.timeout(60)


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
