"""What only the asyncio ``Client`` does: it waits for the transport's write buffer to drain.
The scenarios both clients share run against both in ``test_runtimes``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import jackrabbit_asyncio
from jackrabbit_core import Config

from ..support import HOST, WAIT, Certs

pytestmark = pytest.mark.timeout(60)


def test_large_pipelined_adds_wait_for_the_write_buffer(certs: Certs, tmp_path: Path) -> None:
    """The server runs on the client's own loop, so it cannot read while the client writes:
    the client's buffer fills, and the adds wait for it."""
    config = Config(
        host=HOST,
        port=0,
        db=str(tmp_path / "db"),
        chain_cert=certs.chain,
        private_key=certs.key,
        fsync="never",
    )

    async def scenario() -> None:
        async with await jackrabbit_asyncio.serve(config) as server:
            url = f"wss://{HOST}:{server.port}"
            client = await jackrabbit_asyncio.Client.connect(url, "big", ca=certs.ca)
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

    asyncio.run(asyncio.wait_for(scenario(), 2 * WAIT))
