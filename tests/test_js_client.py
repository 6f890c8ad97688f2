"""The JavaScript client's own suites (``js/test/*.test.js``), run by Node's test runner from the
test command, each bounded in time.

They start real servers (``python -m jackrabbit_asyncio`` with this interpreter) and, for the
browser suite, Debian's Chromium. Where Node, the npm packages (``npm ci --prefix js``),
Chromium or certutil is missing, the suite is skipped with that reason; a suite that ran must
have passed every test and skipped none.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .support import ROOT

JS = ROOT / "js"
#: Each suite's bound, seconds: they take 5-15 s on a quiet machine.
BOUND = 150.0
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _node_missing() -> str | None:
    """Why the JS suites cannot run here, or None."""
    node = shutil.which("node")
    if node is None:
        return "Node.js is not installed (apt-get install nodejs npm)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    major = re.match(r"v(\d+)\.", version.stdout)
    if major is None or int(major[1]) < 20:
        return f"the JS test suites need Node.js >= 20, found {version.stdout.strip()}"
    for package in ("@msgpack/msgpack", "ws", "typescript", "playwright-core"):
        if not (JS / "node_modules" / package / "package.json").exists():
            return f"the npm package {package} is not installed (npm ci --prefix js)"
    return None


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if shutil.which("certutil") is None:
        return "no certutil to make Chromium trust the test CA (apt-get install libnss3-tools)"
    return None


def _run(suite: str) -> str:
    """``node --test js/test/SUITE.test.js``; its TAP output. Node and everything it started
    (servers, Chromium) run in their own process group, killed whole if the bound runs out."""
    env = {**os.environ, "JACKRABBIT_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    args = ["node", "--test", "--test-reporter=tap", f"test/{suite}.test.js"]
    with subprocess.Popen(
        args,
        cwd=JS,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as node:
        try:
            output, _ = node.communicate(timeout=BOUND)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            output, _ = node.communicate()
            pytest.fail(f"{suite} suite ran over {BOUND} s:\n{output[-6000:]}")
    assert node.returncode == 0, output[-12000:]
    return output


def _counts(output: str) -> dict[str, int]:
    """The TAP summary: ``# pass N``, ``# skipped N``..."""
    return {name: int(count) for name, count in re.findall(r"^# (\w+) (\d+)$", output, re.M)}


@pytest.mark.timeout(BOUND + 30)
@pytest.mark.parametrize("suite", ["client", "types", "browser"])
def test_js_suite(suite: str) -> None:
    reason = _node_missing() or (_browser_missing() if suite == "browser" else None)
    if reason is not None:
        pytest.skip(reason)
    output = _run(suite)
    counts = _counts(output)
    assert counts.get("pass", 0) > 0, output[-6000:]
    assert counts.get("fail") == 0, output[-6000:]
    assert counts.get("skipped") == 0, output[-6000:]
