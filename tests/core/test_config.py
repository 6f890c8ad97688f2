"""The command line of CONTRACT §1, parsed once for both shells."""

from __future__ import annotations

import pytest

from jackrabbit_core.cli import AddCommand, Serve, TakeCommand, parse_command, ready_line
from jackrabbit_core.config import Config, parse_args
from jackrabbit_core.exceptions import ConfigError
from jackrabbit_core.routes import queue_for


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
    "argv",
    [
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
