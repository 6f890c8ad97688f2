"""The files a server makes are private to its user, and a failed start makes none.

Every server here starts under umask 022, the usual default, with which RocksDB's files
would be 0644 in a 0755 directory: readable by every local user.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from ..support import Certs, ServerProcess, write_certs
from .conftest import Programs, one_line_error, server_flags

pytestmark = pytest.mark.timeout(60)


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    """Child processes started in the block inherit ``mask``."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _modes(folder: Path) -> dict[str, int]:
    """Permission bits of ``folder`` and of everything under it, by relative path."""
    found = {".": stat.S_IMODE(folder.stat().st_mode)}
    for path in folder.rglob("*"):
        found[str(path.relative_to(folder))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def _assert_private(folder: Path) -> None:
    modes = _modes(folder)
    loose = {
        name: oct(mode)
        for name, mode in modes.items()
        if mode != (0o700 if (folder / name).is_dir() else 0o600)
    }
    assert not loose, f"not private: {loose}"
    assert len(modes) > 5, modes  # RocksDB's files are there to be checked


def _stop(server: ServerProcess) -> None:
    code, stderr = server.terminate()
    assert code == 0, stderr


def test_database_is_0700_and_its_files_0600(
    programs: Programs, certs: Certs, tmp_path: Path
) -> None:
    db = tmp_path / "db"
    with _umask(0o022):
        server = programs.server(*server_flags(certs, db))
    port = server.port()
    added = programs.run(
        "add", "--url", f"wss://127.0.0.1:{port}", "--ca", certs.ca, *map(str, range(50))
    )
    assert added.returncode == 0, added.stderr
    _stop(server)  # closing flushes the memtable: files made after start-up are checked too
    _assert_private(db)
    with _umask(0o022):  # and again after a restart (new log, manifest, options files)
        server = programs.server(*server_flags(certs, db))
    server.port()
    _stop(server)
    _assert_private(db)


def test_dev_certificates_are_private(programs: Programs, tmp_path: Path) -> None:
    with _umask(0o022):
        server = programs.server("--dev", "--port", "0", "--db", "devdb")
    server.port()
    # Made in a child process: the server itself never loads trustme or cryptography.
    maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
    assert "cryptography" not in maps and "trustme" not in maps
    _stop(server)
    modes = _modes(tmp_path / "devdb")
    assert modes["."] == 0o700
    assert modes["dev-certs"] == 0o700
    assert modes["dev-certs/private_key.pem"] == 0o600


def _mismatched_key(tmp_path: Path, certs: Certs) -> list[str]:
    other = write_certs(tmp_path, trustme.CA())
    return ["--chain-cert", certs.chain, "--private-key", other.key]


def _junk_chain(tmp_path: Path, certs: Certs) -> list[str]:
    junk = tmp_path / "junk.pem"
    junk.write_text("junk\n")
    return ["--chain-cert", str(junk), "--private-key", certs.key]


def _missing_key(tmp_path: Path, certs: Certs) -> list[str]:
    return ["--chain-cert", certs.chain, "--private-key", str(tmp_path / "nope.key")]


@pytest.mark.parametrize("bad", [_missing_key, _mismatched_key, _junk_chain])
def test_a_certificate_error_leaves_no_db_directory(
    programs: Programs, certs: Certs, tmp_path: Path, bad: Callable[[Path, Certs], list[str]]
) -> None:
    flags = bad(tmp_path, certs)
    result = programs.run("--port", "0", "--db", str(tmp_path / "new" / "db"), *flags)
    one_line_error(result, 2)
    assert not (tmp_path / "new").exists()
