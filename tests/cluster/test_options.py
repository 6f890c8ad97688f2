"""The cluster flags (protocol §10.1), and ``--cluster`` without its optional extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conformance.harness import REPO_ROOT, Certificates
from jackrabbit_core import ConfigError
from jackrabbit_host.options import parse_args

DSN = "postgresql://jackrabbit@127.0.0.1:1/jackrabbit"


def test_the_cluster_flags_fill_the_config() -> None:
    config = parse_args(["--cluster", DSN, "--node-name", "n1", "--advertise",
                         "wss://10.0.0.1:8443", "--lease", "2.5"])  # fmt: skip
    assert (config.cluster, config.node_name, config.advertise, config.lease) == (
        DSN, "n1", "wss://10.0.0.1:8443", 2.5,
    )  # fmt: skip
    assert config.clustered and DSN not in repr(config)  # it may hold a password
    assert parse_args([]).lease == 5.0 and not parse_args([]).clustered


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--node-name", "n1"], "--node-name needs --cluster"),
        (["--lease", "3"], "--lease needs --cluster"),
        (["--cluster", DSN, "--advertise", "https://x:1"], "wss://HOST:PORT"),
        (["--cluster", DSN, "--node-name", "bad name"], "--node-name"),
        (["--cluster", DSN, "--lease", "0"], "--lease"),
    ],
)
def test_bad_cluster_flags_are_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_args(argv)
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("shell", ["asyncio", "threads"])
def test_cluster_without_psycopg_fails_with_one_clear_line(
    shell: str, certs: Certificates
) -> None:
    """What a user sees who did not install the ``[cluster]`` extra (psycopg hidden here)."""
    program = (
        "import sys; sys.modules['psycopg'] = None; "
        f"from jackrabbit_{shell}.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, "--host", "127.0.0.1", "--port", "0",
         "--chain-cert", str(certs.chain), "--private-key", str(certs.key), "--cluster", DSN],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2, result
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "pip install 'jackrabbit[cluster]'" in result.stderr
    assert DSN not in result.stderr + result.stdout
