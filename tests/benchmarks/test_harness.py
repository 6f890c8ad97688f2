"""The harness's own parts that need no server: the command line (A/B systems), exporting a
git ref, CPU time from /proc, and the frames the non-reading client sends."""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgpack
import pytest
from wsproto.frame_protocol import FrameProtocol, Opcode

from benchmarks import checkout, cli, holders
from benchmarks.peers import Jackrabbit
from benchmarks.procs import cpu_seconds
from benchmarks.session import make_entries


def test_ab_adds_a_twin_after_each_shell() -> None:
    ns = cli.parse_args(["--ab", "main"])
    assert ns.chosen == ["asyncio", "asyncio@main", "threads", "threads@main"]
    ns = cli.parse_args(["--systems", "asyncio,nats", "--ab", "HEAD~1"])
    assert ns.chosen == ["asyncio", "asyncio@HEAD~1", "nats"]


def test_systems_accept_a_shell_at_a_ref_only() -> None:
    assert cli.parse_args(["--systems", "threads@v1,asyncio"]).chosen == ["threads@v1",
                                                                            "asyncio"]
    for bad in ("nats@main", "asyncio@", "kafka"):
        with pytest.raises(SystemExit):
            cli.parse_args(["--systems", bad])


def test_defaults() -> None:
    assert cli.parse_args([]).chosen == ["asyncio", "threads", "client", "rabbitmq", "nats",
                                         "redis"]
    assert cli.parse_args(["--quick"]).chosen == ["asyncio", "threads"]


def test_a_twin_runs_from_its_exported_tree(tmp_path: Path) -> None:
    entries = make_entries(["asyncio", "asyncio@main", "client"], {"main": tmp_path})
    names = [e.name for e in entries]
    assert names == ["jackrabbit asyncio", "jackrabbit asyncio@main",
                     "jackrabbit asyncio (project client)"]
    assert entries[0].peer is entries[2].peer  # the client row drives the same server
    twin = entries[1].peer
    assert isinstance(twin, Jackrabbit)
    assert twin.root == tmp_path and twin.fresh().root == tmp_path


def test_export_writes_the_tree_of_a_commit(tmp_path: Path) -> None:
    commit = checkout.export("HEAD", tmp_path / "src")
    assert len(commit) == 40
    assert (tmp_path / "src" / "jackrabbit_core" / "server.py").is_file()
    with pytest.raises(checkout.CheckoutError):
        checkout.export("no-such-ref-anywhere", tmp_path / "nope")


def test_cpu_seconds_counts_this_process() -> None:
    before = cpu_seconds(os.getpid())
    start = time.process_time()
    while time.process_time() - start < 0.2:  # bounded: 0.2 s of CPU
        sum(range(1000))
    assert cpu_seconds(os.getpid()) - before >= 0.1
    assert cpu_seconds(2**22 + 12345) == 0  # a process that does not exist


@pytest.mark.parametrize("mix", ["pings", "adds"])
def test_non_reader_frames_are_valid_masked_client_frames(mix: str) -> None:
    server_side = FrameProtocol(client=False, extensions=[])
    server_side.receive_bytes(holders.deaf_batch(mix) * 2)
    frames = list(server_side.received_frames())
    if mix == "pings":
        assert [f.opcode for f in frames] == [Opcode.PING, Opcode.BINARY] * 2
        assert msgpack.unpackb(frames[1].payload) == {"command": "no-such-command"}
    else:
        assert [f.opcode for f in frames] == [Opcode.BINARY] * 2
        assert msgpack.unpackb(frames[0].payload) == {"command": "add", "data": b"x" * 100}
