"""The README's commands and example, as a newcomer runs them.

- The set-up command makes and activates a virtual environment before ``pip install``: a
  Debian/Ubuntu system Python refuses to install outside one (PEP 668).
- CI (``.ci/run``) runs the README's test command verbatim, so it stays true.
- The Python client example runs against a ``--dev`` server, twice: the second run sees no
  ``redelivered`` message, because the first acknowledged everything it read.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .support import ROOT, WAIT, ServerProcess, _env

README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, re.MULTILINE | re.DOTALL)


def test_set_up_commands_make_a_virtual_environment() -> None:
    setup, tests = _blocks("sh")[:2]
    venv = "python3 -m venv .venv && . .venv/bin/activate && "
    assert setup.strip() == f"{venv}pip install -e . && python -m jackrabbit_asyncio --dev"
    assert tests.strip().startswith(f"{venv}pip install -e '.[test]' && ")
    assert "externally-managed-environment" in README
    assert "Clone the\nrepository and `cd` into it first" in README


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    command = _blocks("sh")[1].strip()
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in lines


@pytest.mark.timeout(90)
def test_client_example_acks_what_it_reads(tmp_path: Path) -> None:
    [example] = _blocks("python")
    assert '"wss://127.0.0.1:8443", "tmp/dev-certs/ca.pem"' in example
    server = ServerProcess("jackrabbit_asyncio", "--dev", "--port", "0", cwd=tmp_path)
    try:
        port = server.port()  # the --dev server keeps its CA in ./tmp, as the example expects
        code = example.replace("wss://127.0.0.1:8443", f"wss://127.0.0.1:{port}")
        runs = [
            subprocess.run(
                [sys.executable, "-c", code],
                cwd=tmp_path,
                env=_env(),
                capture_output=True,
                text=True,
                timeout=WAIT,
            )
            for _ in range(2)
        ]
    finally:
        server.kill()
    for run in runs:
        assert run.returncode == 0, run.stderr
    first, second = ([line.split() for line in run.stdout.splitlines()] for run in runs)
    assert first[0][:2] == ["stored", "[1,"] and first[2][0] == "1"
    read_first = [line for line in first if line[-1] in ("True", "False")]
    read_second = [line for line in second if line[-1] in ("True", "False")]
    assert [line[0] for line in read_first] == [str(seq) for seq in range(1, 12)]
    assert [line[0] for line in read_second] == [str(seq) for seq in range(12, 22)]
    assert all(line[-1] == "False" for line in read_first + read_second), runs[1].stdout
