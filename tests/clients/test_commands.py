"""The terminal commands' credentials: ``--token`` or ``JACKRABBIT_TOKEN``, and a refused one
reported as one line (never a traceback, never the token), by both shells."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jackrabbit_core import ConfigError
from jackrabbit_host.cli import AddCommand, TakeCommand, parse_command

from ..support import WAIT, _env
from .conftest import MakeDoorman


def test_the_token_comes_from_the_flag_or_the_environment() -> None:
    add = parse_command(["add", "--token", "flag-token", "m"], "x", {})
    assert isinstance(add, AddCommand) and add.token == "flag-token"
    take = parse_command(["take"], "x", {"JACKRABBIT_TOKEN": "env-token"})
    assert isinstance(take, TakeCommand) and take.token == "env-token"
    flag_wins = parse_command(["take", "--token", "flag"], "x", {"JACKRABBIT_TOKEN": "env"})
    assert isinstance(flag_wins, TakeCommand) and flag_wins.token == "flag"
    for environ in ({}, {"JACKRABBIT_TOKEN": ""}):  # an empty variable is no token
        none = parse_command(["add", "m"], "x", environ)
        assert isinstance(none, AddCommand) and none.token is None
    assert "flag-token" not in repr(add) and "env-token" not in repr(take)


@pytest.mark.parametrize(
    ("argv", "environ", "source"),
    [
        (["add", "--token", "zq ux", "m"], {}, "--token"),
        (["take", "--token", ""], {}, "--token"),
        (["take"], {"JACKRABBIT_TOKEN": "zq\nux"}, "JACKRABBIT_TOKEN"),
    ],
)
def test_a_token_that_cannot_be_sent_is_a_usage_error(
    argv: list[str], environ: dict[str, str], source: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_command(argv, "x", environ)
    message = str(refused.value)
    assert message.startswith(f"{source}: ") and "zq" not in message


@pytest.mark.parametrize("shell", ["jackrabbit_asyncio", "jackrabbit_threads"])
@pytest.mark.parametrize(("status", "verb", "by_flag"), [(401, "add", True), (403, "take", False)])
def test_refused_credentials_are_one_line_and_status_1(
    doorman: MakeDoorman, tmp_path: Path, shell: str, status: int, verb: str, by_flag: bool
) -> None:
    door = doorman(status, "no grant on queue orders")
    token = "s3cret-t0ken"
    args = ["--url", door.url, "--ca", door.ca, "--queue", "orders"]
    args += ["--token", token] if by_flag else []
    result = subprocess.run(
        [sys.executable, "-m", shell, verb, *args, *(["hello"] if verb == "add" else [])],
        cwd=tmp_path,
        env=_env({} if by_flag else {"JACKRABBIT_TOKEN": token}),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    code = "unauthorized" if status == 401 else "forbidden"
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    expected = f"python -m {shell}: error: {code}: the server refused the connection with HTTP"
    assert line.startswith(f"{expected} {status} ") and line.endswith(": no grant on queue orders")
    assert token not in result.stderr
    assert door.header(0, b"authorization") == f"Bearer {token}".encode()
