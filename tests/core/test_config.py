"""The command line of CONTRACT §1, parsed once for both shells."""

from __future__ import annotations

import os

import pytest

from jackrabbit_core.config import MIB, Budget, Config
from jackrabbit_core.envelope import DEFAULT_PREFETCH, MAX_PREFETCH
from jackrabbit_core.exceptions import ConfigError
from jackrabbit_core.routes import queue_for
from jackrabbit_host.cli import (
    DEV_URL,
    AddCommand,
    Serve,
    TakeCommand,
    dev_banner,
    parse_command,
    program_name,
    ready_line,
)
from jackrabbit_host.options import parse_args


def test_defaults_match_the_contract() -> None:
    config = parse_args([])
    assert config == Config()
    assert (config.host, config.port, config.db) == ("0.0.0.0", 443, "tmp")
    assert (config.chain_cert, config.private_key) == ("certs/chain.pem", "certs/private_key.pem")
    assert (config.fsync, config.max_message_bytes, config.heartbeat) == ("always", 1 << 20, 5.0)
    assert (config.max_connections, config.handover_timeout) == (1024, 30.0)


@pytest.mark.parametrize(
    "argv",
    [
        ["--save-path", "d", "--chain_cert", "c", "--private_key", "k"],
        ["--db=d", "--cert=c", "--cert-path=k"],
        ["--db", "d", "--chain-cert", "c", "--private-key", "k"],
    ],
)
def test_aliases_and_equals_forms(argv: list[str]) -> None:
    config = parse_args(argv)
    assert (config.db, config.chain_cert, config.private_key) == ("d", "c", "k")


def test_dev_binds_loopback_8443_unless_told_otherwise() -> None:
    config = parse_args(["--dev", "--db", "x"])
    assert (config.host, config.port) == ("127.0.0.1", 8443)
    assert config.chain_cert.startswith("x/dev-certs/")
    assert parse_args(["--dev", "--port=0"]).port == 0


@pytest.mark.parametrize(
    ("text", "size"),
    [("64MiB", 64 * MIB), ("64M", 64 * MIB), ("128m", 128 * MIB), ("1G", 1024 * MIB),
     ("8192KiB", 8 * MIB), ("67108864", 64 * MIB), ("1.5GiB", 1536 * MIB)],
)  # fmt: skip
def test_memory_budget_sizes(text: str, size: int) -> None:
    assert parse_args(["--memory-budget", text]).memory_budget == size


def test_the_default_budget_keeps_the_limits_measured_before_it() -> None:
    """At 64 MiB the shares are the constants they replaced (and full throughput)."""
    budget = parse_args([]).budget
    assert budget == Budget.of(64 * MIB)
    store = (budget.write_buffers, budget.write_buffer, budget.block_cache)
    assert store == (16 * MIB, 8 * MIB, 4 * MIB)
    in_flight = (budget.read_bytes, budget.pending_bytes, budget.pump_bytes)
    assert in_flight == (8 * MIB, 4 * MIB, 4 * MIB)
    buffers = (budget.high_water, budget.low_water, budget.read_stop)
    assert buffers == (MIB, MIB // 4, 16 * MIB)
    # Every share follows the budget.
    half = Budget.of(32 * MIB)
    assert all(getattr(half, name) * 2 == getattr(budget, name) for name in Budget.__slots__)


@pytest.mark.parametrize(
    "argv",
    [
        ["--memory-budget", "7MiB"],
        ["--memory-budget", "64X"],
        ["--memory-budget", "lots"],
        ["--memory-budget", "infG"],
        ["--port", "70000"],
        ["--fsync", "sometimes"],
        ["--heartbeat", "0"],
        ["--bogus"],
        ["--max-connections", "-1"],
        ["--heartbeat", "nan"],
    ],
)
def test_bad_flags_raise_config_error(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        parse_args(argv)


def test_commands() -> None:
    assert isinstance(parse_command(["--port", "0"], "x"), Serve)
    add = parse_command(["add", "--queue", "jobs", "a", "b"], "x")
    assert isinstance(add, AddCommand) and add.messages == ("a", "b")
    take = parse_command(["take", "--count", "3"], "x")
    assert isinstance(take, TakeCommand) and take.count == 3
    with pytest.raises(ConfigError):
        parse_command(["add", "--queue", "bad name"], "x")


def test_take_prefetch_defaults_to_the_servers() -> None:
    take = parse_command(["take"], "x")
    assert isinstance(take, TakeCommand) and take.prefetch == DEFAULT_PREFETCH == 1000
    assert parse_command(["take", "--prefetch", "7"], "x") == TakeCommand(
        DEV_URL, None, take.ca, 7, None
    )
    for bad in ("0", str(MAX_PREFETCH + 1), "many"):
        with pytest.raises(ConfigError, match="prefetch"):
            parse_command(["take", "--prefetch", bad], "x")


def test_url_and_queue_are_checked_before_connecting() -> None:
    add = parse_command(["add", "--url", "wss://h/queues/jobs", "m"], "x")
    assert isinstance(add, AddCommand) and (add.url, add.queue) == ("wss://h/queues/jobs", None)
    with pytest.raises(ConfigError, match="conflicts"):
        parse_command(["add", "--url", "wss://h/queues/jobs", "--queue", "other", "m"], "x")
    with pytest.raises(ConfigError, match="speaks only TLS"):
        parse_command(["take", "--url", "ws://h"], "x")


@pytest.mark.parametrize(
    ("argv0", "name"),
    [
        ("/work/.venv/lib/python3.11/site-packages/jackrabbit_asyncio/__main__.py", "python -m m"),
        ("/work/.venv/bin/jackrabbit", "jackrabbit"),
        ("jackrabbit", "jackrabbit"),
    ],
)
def test_program_name(argv0: str, name: str) -> None:
    assert program_name(argv0, "m") == name


def test_dev_banner_shows_the_absolute_ca_path() -> None:
    banner = dev_banner(parse_args(["--dev", "--db", "rel"]), 8443, "jackrabbit").splitlines()
    ca = os.path.abspath("rel/dev-certs/ca.pem")
    assert banner[0] == f"dev CA certificate: {ca}"
    assert banner[1] == f"try: jackrabbit add --url wss://127.0.0.1:8443 --ca {ca} hello"
    assert banner[2] == f"     jackrabbit take --url wss://127.0.0.1:8443 --ca {ca}"


def test_ready_line() -> None:
    assert ready_line("127.0.0.1", 8443) == "jackrabbit listening on wss://127.0.0.1:8443"
    assert ready_line("::1", 1) == "jackrabbit listening on wss://[::1]:1"


@pytest.mark.parametrize(
    ("target", "queue"),
    [
        ("/", "default"),
        ("/?x=1", "default"),
        ("/queues/a.b-c_9", "a.b-c_9"),
        ("/queues/", None),
        ("/queues/-x", None),
        ("/queues/" + "a" * 129, None),
        ("/queues/a/b", None),
        ("/other", None),
    ],
)
def test_queue_routes(target: str, queue: str | None) -> None:
    assert queue_for(target) == queue
