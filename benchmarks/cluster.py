"""Cluster mode beside the single node: throughput and p99 latency per queue, and with many
queues spread over three nodes (``docs/cluster.md``).

    python -m benchmarks.cluster                 # 3 rounds, about 2 minutes on 2 cores
    python -m benchmarks.cluster --rounds 1 --messages 1000 --queues 30   # a smoke run

Everything runs on 127.0.0.1: PostgreSQL from Debian's packages in a temporary folder (as the
cluster tests start it), three asyncio nodes on it with ``--lease 5``, and one single asyncio
node on RocksDB with ``--fsync always``. The setups take turns, round by round, the order
rotating; every figure is the median of the rounds with the lowest and highest beside it.

A run of one setup: for each queue, a consumer (``take``, prefetch 1000, acking every 100th
message) and a producer adding ``--messages`` 100-byte messages with 100 in flight, all at
once from this one process (so the Python load generator is part of what is measured, the same
for every setup). Throughput is messages delivered per second from the first add to the last
delivery; latency is from an add being sent to its delivery; server CPU is the user+system time
of the server processes per message: in a cluster, all three nodes and PostgreSQL (its
backends are listed at the start of each run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgpack
from websockets.asyncio.client import ClientConnection, connect

from conformance.harness import Certificates, ServerProcess
from tests.cluster.postgres import Postgres

PAYLOAD = 100
WINDOW = 100
PREFETCH = 1000
ACK_EVERY = 100


@dataclass
class Figures:
    throughput: float
    p99_ms: float
    cpu_us: float


def _cpu(pids: Sequence[int]) -> float:
    """User + system seconds of processes ``pids`` and their reaped children (a process gone
    since counts nothing)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(v) for v in fields[11:15])
    return total / 100.0  # clock ticks


def _family(root: int) -> list[int]:
    """``root`` and its descendants now (the PostgreSQL backends of ``runuser postgres``)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    family, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                grew = True
    return sorted(family)


async def _open(url: str, context: ssl.SSLContext) -> ClientConnection:
    return await connect(url, ssl=context, max_size=None, compression=None, proxy=None,
                         ping_interval=None, open_timeout=20)  # fmt: skip


async def _consume(ws: ClientConnection, count: int, latencies: list[float]) -> None:
    await ws.send(msgpack.packb({"command": "take", "prefetch": PREFETCH}))
    got = 0
    while got < count:
        event = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 60))
        if event.get("event") != "message":
            continue
        got += 1
        latencies.append(time.perf_counter() - float(event["data"][:20]))
        if got % ACK_EVERY == 0 or got == count:
            await ws.send(msgpack.packb({"command": "ack", "seq": event["seq"]}))


async def _produce(ws: ClientConnection, count: int) -> None:
    sent = confirmed = 0
    while confirmed < count:
        while sent < count and sent - confirmed < WINDOW:
            stamp = b"%20.9f" % time.perf_counter()
            await ws.send(msgpack.packb({"command": "add", "data": stamp.ljust(PAYLOAD, b".")}))
            sent += 1
        event = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 60))
        assert event.get("event") == "added", event
        confirmed += 1


async def _run(
    urls: list[tuple[str, str]], count: int, context: ssl.SSLContext
) -> tuple[float, list[float]]:
    """One producer and one consumer per ``(producer url, consumer url)``; elapsed seconds and
    every message's latency."""
    latencies: list[float] = []
    producers = [await _open(p, context) for p, _ in urls]
    consumers = [await _open(c, context) for _, c in urls]
    started = time.perf_counter()
    await asyncio.gather(
        *(_consume(ws, count, latencies) for ws in consumers),
        *(_produce(ws, count) for ws in producers),
    )
    elapsed = time.perf_counter() - started
    for ws in (*producers, *consumers):
        await ws.close()
    return elapsed, latencies


def measure(
    urls: list[tuple[str, str]],
    count: int,
    context: ssl.SSLContext,
    processes: Callable[[], Sequence[int]],
) -> Figures:
    pids = processes()
    before = _cpu(pids)
    elapsed, latencies = asyncio.run(_run(urls, count, context))
    cpu = _cpu(pids) - before
    total = count * len(urls)
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    return Figures(total / elapsed, p99, cpu / total * 1e6)


def _warm(url: str, context: ssl.SSLContext) -> None:
    """One add through ``url``: the node a client reaches first takes the queue."""

    async def one() -> None:
        ws = await _open(url, context)
        await ws.send(msgpack.packb({"command": "add", "data": b"%20.9f" % time.perf_counter()}))
        await ws.recv()
        await ws.close()

    asyncio.run(one())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=4000, help="per queue, one queue")
    parser.add_argument("--queues", type=int, default=100)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cluster.md"))
    args = parser.parse_args(argv)
    many = max(1, args.messages * 5 // args.queues)  # messages per queue with many queues

    postgres = Postgres()
    postgres.start()
    root = Path(tempfile.mkdtemp(prefix="jackrabbit-bench-cluster-"))
    certs = Certificates.make(root / "certs")
    context = ssl.create_default_context(cafile=str(certs.ca))
    dsn = postgres.create("bench")
    servers: list[ServerProcess] = []
    try:
        single = ServerProcess("asyncio", root / "single", certs).start()
        nodes = [
            ServerProcess(
                "asyncio", root / name, certs, args=["--cluster", dsn, "--node-name", name]
            ).start()
            for name in ("n1", "n2", "n3")
        ]
        servers = [single, *nodes]
        assert postgres.process is not None
        postmaster = postgres.process.pid

        def node_pids() -> list[int]:
            # PostgreSQL's CPU counts for the cluster: its postmaster and every backend.
            pids = [n.process.pid for n in nodes if n.process is not None]
            return pids + _family(postmaster)

        def single_pid() -> list[int]:
            return [single.process.pid] if single.process is not None else []
        counter = iter(range(10**6))

        def q(prefix: str) -> str:
            return f"/queues/{prefix}-{next(counter)}"

        def one_queue_single() -> Figures:
            queue = q("s1")
            return measure([(single.url(queue), single.url(queue))], args.messages, context,
                           single_pid)  # fmt: skip

        def one_queue_owner() -> Figures:
            queue = q("c1")
            _warm(nodes[0].url(queue), context)
            url = nodes[0].url(queue)
            return measure([(url, url)], args.messages, context, node_pids)

        def one_queue_relay() -> Figures:
            queue = q("r1")
            _warm(nodes[0].url(queue), context)
            url = nodes[1].url(queue)
            return measure([(url, url)], args.messages, context, node_pids)

        def many_single() -> Figures:
            queues = [q("sm") for _ in range(args.queues)]
            urls = [(single.url(x), single.url(x)) for x in queues]
            return measure(urls, many, context, single_pid)

        def many_cluster() -> Figures:
            queues = [q("cm") for _ in range(args.queues)]
            for i, x in enumerate(queues):  # each queue on node i % 3
                _warm(nodes[i % 3].url(x), context)
            urls = [(nodes[i % 3].url(x), nodes[i % 3].url(x)) for i, x in enumerate(queues)]
            return measure(urls, many, context, node_pids)

        setups: list[tuple[str, Callable[[], Figures]]] = [
            ("single node (RocksDB), 1 queue", one_queue_single),
            ("cluster, 1 queue, clients at its node", one_queue_owner),
            ("cluster, 1 queue, clients through a relay", one_queue_relay),
            (f"single node (RocksDB), {args.queues} queues", many_single),
            (f"cluster, {args.queues} queues over 3 nodes", many_cluster),
        ]
        results: dict[str, list[Figures]] = {name: [] for name, _ in setups}
        for round_ in range(args.rounds):
            order = setups[round_ % len(setups):] + setups[: round_ % len(setups)]
            for name, run in order:
                print(f"round {round_ + 1}: {name}", file=sys.stderr, flush=True)
                results[name].append(run())
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                server.stop()
        postgres.stop()

    def cell(values: list[float], fmt: str) -> str:
        low, mid, high = (fmt.format(f(values)) for f in (min, statistics.median, max))
        return f"{mid} ({low} to {high})"

    lines = [
        "# Cluster mode beside the single node",
        "",
        f"`python -m benchmarks.cluster --rounds {args.rounds} --messages {args.messages} "
        f"--queues {args.queues}`: {args.messages} messages on one queue, {many} on each of "
        f"{args.queues} queues; {PAYLOAD}-byte messages, {WINDOW} adds in flight per producer. "
        "Median of the rounds (lowest to highest). PostgreSQL 15 and every node on the same "
        "2-core machine as the load generator.",
        "",
        "| setup | delivered msg/s | p99 add→delivery ms | server CPU µs/msg |",
        "|---|---|---|---|",
    ]
    for name, figures in results.items():
        lines.append(
            f"| {name} | {cell([f.throughput for f in figures], '{:,.0f}')} | "
            f"{cell([f.p99_ms for f in figures], '{:.1f}')} | "
            f"{cell([f.cpu_us for f in figures], '{:.0f}')} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
