"""The core stays sans-I/O: no sockets, threads, event loops or clock reads (STYLE §2).

Only the store (RocksDB), the ``--dev`` certificate maker and the start-up glue in ``cli``
may touch the disk; nothing in the core may read the clock or make randomness itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "jackrabbit_core"
FORBIDDEN = {
    "asyncio",
    "concurrent",
    "datetime",
    "random",
    "secrets",
    "selectors",
    "signal",
    "socket",
    "ssl",
    "subprocess",
    "threading",
    "time",
    "uuid",
}
DISK = {"os", "pathlib", "shutil", "tempfile", "rocksdict", "trustme"}
DISK_ALLOWED = {"store.py", "devcerts.py", "cli.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"open", "__import__"}
        ):
            found.add(node.func.id)
    return found


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_does_no_io(path: Path) -> None:
    imports = _imports(path)
    assert not imports & FORBIDDEN, f"{path.name} imports {imports & FORBIDDEN}"
    if path.name not in DISK_ALLOWED:
        touched = imports & (DISK | {"open"})
        assert not touched, f"{path.name} touches the disk via {touched}"


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom socket import socket\nopen('x')\n")
    assert {"time", "socket", "open"} <= _imports(bad)
