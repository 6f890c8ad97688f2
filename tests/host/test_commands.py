"""The command line as a newcomer meets it, on both shells: help and version, the ``add`` and
``take`` commands' URLs, queues and CA files, and what they say when something is wrong.
Everything runs the real program in a subprocess."""

from __future__ import annotations

import importlib.metadata
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ..support import WAIT, Certs, Programs, server_flags
from .conftest import one_line_error

pytestmark = pytest.mark.timeout(90)


def test_help_names_the_program_and_the_commands(programs: Programs) -> None:
    result = programs.run("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m {programs.module} ")
    assert f"python -m {programs.module} add" in result.stdout
    assert f"python -m {programs.module} take" in result.stdout
    take = programs.run("take", "--help")
    assert take.returncode == 0, take.stderr
    assert take.stdout.startswith(f"usage: python -m {programs.module} take ")
    prefetch = " ".join(take.stdout.split("\n  --prefetch N", 1)[1].split())
    assert prefetch.startswith("most messages delivered and not yet acknowledged")
    assert "(default 1000, the server's)" in prefetch


def test_version(programs: Programs) -> None:
    result = programs.run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"jackrabbit {importlib.metadata.version('jackrabbit')}\n"


def test_the_installed_script_calls_itself_jackrabbit(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("jackrabbit")
    if not script.exists():
        pytest.skip("the project is not installed in this environment (pip install -e .)")
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=WAIT, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: jackrabbit ")
    assert "jackrabbit add" in result.stdout and "jackrabbit take" in result.stdout


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("ws://127.0.0.1:8443", "jackrabbit speaks only TLS"),
        ("127.0.0.1:8443", "not a wss:// URL"),
        ("localhost", "not a wss:// URL"),
        ("wss://127.0.0.1:99999", "bad port"),
        ("wss://127.0.0.1:8443/elsewhere", "names no queue"),
    ],
)
def test_an_unusable_url_is_one_line(programs: Programs, url: str, needle: str) -> None:
    for command in (["add", "--url", url, "x"], ["take", "--url", url]):
        line = one_line_error(programs.run(*command), 2)
        assert needle in line and url in line, line


def test_the_url_path_names_the_queue(programs: Programs, certs: Certs, tmp_path: Path) -> None:
    server = programs.server(*server_flags(certs, tmp_path / "db"))
    base = f"wss://127.0.0.1:{server.port()}"
    added = programs.run("add", "--url", f"{base}/queues/jobs", "--ca", certs.ca, "one")
    assert (added.returncode, added.stdout) == (0, "1\n"), added.stderr
    agreeing = programs.run(
        "add", "--url", f"{base}/queues/jobs", "--queue", "jobs", "--ca", certs.ca, "two"
    )
    assert (agreeing.returncode, agreeing.stdout) == (0, "2\n"), agreeing.stderr
    conflict = programs.run(
        "add", "--url", f"{base}/queues/jobs", "--queue", "other", "--ca", certs.ca, "three"
    )
    assert "conflicts with the URL's path '/queues/jobs'" in one_line_error(conflict, 2)
    taken = programs.run("take", "--url", base, "--queue", "jobs", "--ca", certs.ca, "--count", "2")
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.splitlines() == ["1\tone", "2\ttwo"]
    nothing_in_default = programs.run("add", "--url", base, "--ca", certs.ca, "first")
    assert nothing_in_default.stdout == "1\n", nothing_in_default.stderr


def test_a_missing_or_bad_ca_file_is_named(programs: Programs, tmp_path: Path) -> None:
    missing = programs.run("add", "--ca", "/nope.pem", "x")
    assert one_line_error(missing, 2).endswith("CA file not found: --ca /nope.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("junk\n")
    line = one_line_error(programs.run("take", "--ca", str(junk)), 2)
    assert f"--ca {junk}" in line and "no PEM certificate" in line


def test_an_unknown_certificate_says_to_pass_the_ca(
    programs: Programs, certs: Certs, tmp_path: Path
) -> None:
    """Outside the checkout there is no ./tmp/dev-certs/ca.pem to fall back on."""
    server = programs.server(*server_flags(certs, tmp_path / "db"))
    url = f"wss://127.0.0.1:{server.port()}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    line = one_line_error(programs.run("add", "--url", url, "x", cwd=elsewhere), 1)
    assert "cannot verify the server's certificate" in line
    assert "pass --ca FILE" in line and "dev-certs/ca.pem" in line


def test_dev_try_lines_work_from_any_directory(programs: Programs, tmp_path: Path) -> None:
    """The banner's CA path is absolute, so its commands can be pasted anywhere."""
    server = programs.server("--dev", "--port", "0", "--db", "devdb")
    server.port()
    ca = tmp_path / "devdb" / "dev-certs" / "ca.pem"
    assert server.line() == f"dev CA certificate: {ca}"
    add_line, take_line = server.line(), server.line()
    assert add_line.startswith(f"try: python -m {programs.module} add ")
    assert f"--ca {ca} " in add_line and take_line.endswith(f"--ca {ca}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = shlex.split(add_line.removeprefix("try:"))[3:]  # after "python -m MODULE"
    result = programs.run(*args, cwd=elsewhere)
    assert (result.returncode, result.stdout) == (0, "1\n"), result.stderr


def test_take_fails_when_the_server_goes_away(
    programs: Programs, certs: Certs, tmp_path: Path
) -> None:
    server = programs.server(*server_flags(certs, tmp_path / "db"))
    url = f"wss://127.0.0.1:{server.port()}"
    assert programs.run("add", "--url", url, "--ca", certs.ca, "hello").returncode == 0
    take = programs.server("take", "--url", url, "--ca", certs.ca)  # stdout lines, bounded
    assert take.line() == "1\thello"  # it is connected and reading
    server.proc.send_signal(signal.SIGTERM)
    code = take.proc.wait(WAIT)
    assert take.proc.stderr is not None
    stderr = take.proc.stderr.read()
    assert code == 1, stderr
    assert "Traceback" not in stderr
    [line] = stderr.strip().splitlines()
    assert f"the server at {url} ended the connection (close code 1001" in line
