"""The command line as a user meets it: start-up errors, ``--dev``, signals, add and take."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jackrabbit_core.client import Closed, Opened, Subscribed
from jackrabbit_threads import Client

from .conftest import HOST, ROOT, WAIT, Certs, Process, run
from .wire import Peer

READY = re.compile(r"jackrabbit listening on wss://127\.0\.0\.1:(\d+)$")


def _one_line_error(result_stderr: str) -> str:
    assert "Traceback" not in result_stderr
    lines = result_stderr.strip().splitlines()
    assert len(lines) == 1, result_stderr
    return lines[0]


def _server(certs: Certs, tmp_path: Path, *extra: str) -> tuple[Process, int]:
    proc = Process(
        "--host", HOST, "--port", "0", "--db", str(tmp_path / "db"),
        "--chain-cert", certs.chain, "--private-key", certs.key, "--fsync", "never", *extra,
        cwd=tmp_path,
    )
    match = READY.match(proc.line())
    assert match, "no ready line"
    return proc, int(match.group(1))


def test_missing_certificate_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run("--port", "0", "--db", str(tmp_path / "db"), "--chain-cert", "nope.pem",
                 "--private-key", "nope.key", cwd=tmp_path)
    assert result.returncode == 2
    assert "certificate file not found" in _one_line_error(result.stderr)
    assert result.stdout == ""


def test_port_in_use_is_one_line_and_exit_2(certs: Certs, tmp_path: Path) -> None:
    with socket.create_server((HOST, 0)) as taken:
        port = taken.getsockname()[1]
        result = run("--host", HOST, "--port", str(port), "--db", str(tmp_path / "db"),
                     "--chain-cert", certs.chain, "--private-key", certs.key, cwd=tmp_path)
    assert result.returncode == 2
    assert "already in use" in _one_line_error(result.stderr)


def test_db_that_is_a_file_is_one_line_and_exit_2(certs: Certs, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    result = run("--port", "0", "--db", str(tmp_path / "afile"), "--chain-cert", certs.chain,
                 "--private-key", certs.key, cwd=tmp_path)
    assert result.returncode == 2
    assert "afile" in _one_line_error(result.stderr)


def test_bad_flag_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run("--port", "http", cwd=tmp_path)
    assert result.returncode == 2
    _one_line_error(result.stderr)


def test_dev_prints_the_ca_and_serves_with_it(tmp_path: Path) -> None:
    proc = Process("--dev", "--port", "0", "--db", "db", cwd=tmp_path)
    match = READY.match(proc.line())
    assert match
    port = int(match.group(1))
    banner = proc.line()
    assert banner.startswith("dev CA certificate: ")
    ca = tmp_path / banner.removeprefix("dev CA certificate: ")
    assert ca.exists()
    with Client.connect(f"wss://{HOST}:{port}", ca=str(ca)) as client:
        assert client.add(b"hello") == 1
    code, stderr = proc.terminate()
    assert code == 0, stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_clients_with_1001_and_exits_0(
    certs: Certs, tmp_path: Path, sig: int
) -> None:
    proc, port = _server(certs, tmp_path)
    peer = Peer(port, certs.ca)
    peer.wait_for(lambda e: isinstance(e, Opened))
    peer.protocol.take(10)
    peer.flush()
    peer.wait_for(lambda e: isinstance(e, Subscribed))
    proc.proc.send_signal(sig)
    closed = peer.closed()
    assert isinstance(closed, Closed)
    assert closed.code == 1001
    peer.close()
    code, stderr = proc.terminate(sig)
    assert code == 0
    assert stderr == ""


def test_add_and_take_commands(certs: Certs, tmp_path: Path) -> None:
    proc, port = _server(certs, tmp_path)
    url = f"wss://{HOST}:{port}"
    added = run("add", "--url", url, "--ca", certs.ca, "--queue", "jobs", "one", "two",
                cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert added.stdout.split() == ["1", "2"]
    piped = subprocess.run(
        [sys.executable, "-m", "jackrabbit_threads", "add", "--url", url, "--ca", certs.ca,
         "--queue", "jobs"],
        input="three\nfour\n", capture_output=True, text=True, timeout=WAIT, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.split() == ["3", "4"]
    taken = run("take", "--url", url, "--ca", certs.ca, "--queue", "jobs", "--count", "4",
                cwd=tmp_path)
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.splitlines() == ["1\tone", "2\ttwo", "3\tthree", "4\tfour"]
    # They were acked: a second consumer gets nothing more, a new add comes next.
    with Client.connect(url, "jobs", ca=certs.ca) as client:
        assert client.add(b"five") == 5
        messages = client.take()
        assert next(messages).seq == 5
    assert proc.terminate()[0] == 0

