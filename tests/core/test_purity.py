"""The core stays sans-I/O: no sockets, threads, event loops, clock, randomness, environment,
disk, logging set-up or printing, and no store library (docs/architecture.md).

Two checks. Every module of the core is read as source, and every name it imports, relative
or absolute, and every call to a built-in that does I/O is checked. Then the whole core is
imported in a fresh interpreter, which shows what it really pulls in through the libraries it
uses: nothing of the runtime shells, the host or a store.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "jackrabbit_core"

#: Modules the core may not import at all, directly or under a relative name.
FORBIDDEN = {
    "asyncio",
    "concurrent",
    "datetime",
    "jackrabbit_asyncio",
    "jackrabbit_host",
    "jackrabbit_threads",
    "logging",
    "os",
    "pathlib",
    "random",
    "rocksdict",
    "secrets",
    "selectors",
    "shutil",
    "signal",
    "socket",
    "ssl",
    "subprocess",
    "sys",
    "tempfile",
    "threading",
    "time",
    "trustme",
    "uuid",
}
#: Built-ins that read or write the outside world.
FORBIDDEN_CALLS = {"print", "open", "input", "__import__", "exec", "eval", "breakpoint"}
#: What importing the core may not load, through any library.
NOT_LOADED = {
    "asyncio",
    "concurrent",
    "jackrabbit_asyncio",
    "jackrabbit_host",
    "jackrabbit_threads",
    "rocksdict",
    "selectors",
    "socket",
    "ssl",
    "subprocess",
    "trustme",
}


def _uses(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, and the I/O built-ins it calls."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1 and node.module is None:  # from . import x, y
                found.update(alias.name for alias in node.names)
            elif node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            else:  # from .. import: out of the core
                found.add("..")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORBIDDEN_CALLS
        ):
            found.add(node.func.id)
    return found


CORE_MODULES = {path.stem for path in CORE.glob("*.py")}


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_does_no_io(path: Path) -> None:
    uses = _uses(path)
    bad = uses & (FORBIDDEN | FORBIDDEN_CALLS | {".."})
    assert not bad, f"{path.name} uses {sorted(bad)}"
    relative = {name for name in uses if name in CORE_MODULES}
    assert relative <= CORE_MODULES  # every relative import is a core module, itself checked


def test_importing_the_core_loads_no_runtime_host_or_store() -> None:
    script = (
        "import importlib, json, pkgutil, sys\n"
        "import jackrabbit_core\n"
        "for m in pkgutil.iter_modules(jackrabbit_core.__path__):\n"
        "    importlib.import_module('jackrabbit_core.' + m.name)\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = set(json.loads(result.stdout))
    assert "jackrabbit_core" in loaded
    assert not loaded & NOT_LOADED, sorted(loaded & NOT_LOADED)


def test_the_check_sees_forbidden_imports_and_calls(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom socket import socket\nfrom .. import x\nopen('x')\nprint()\n")
    assert {"time", "socket", "..", "open", "print"} <= _uses(bad)
