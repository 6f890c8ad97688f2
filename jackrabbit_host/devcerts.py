"""Development certificates for ``--dev``: made once with ``trustme``, then reused.

A newcomer's first minute should not involve OpenSSL. ``--dev`` keeps a private CA and a
server certificate for ``localhost``, ``127.0.0.1`` and ``::1`` under ``DB/dev-certs/``;
clients trust the CA file, whose path the server prints.

The certificates are made in a child process (``python -m jackrabbit_host.devcerts DB``): a
server that imported ``trustme`` would keep it and ``cryptography`` loaded for its whole life,
about 11 MiB of memory for something it does once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from jackrabbit_core.exceptions import ConfigError

from .rocks import make_private_dir

DEV_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class DevPaths:
    """Where ``--dev`` keeps its files."""

    ca: str
    chain: str
    key: str


def dev_paths(db: str) -> DevPaths:
    """The CA, certificate chain and key paths for the database directory ``db``."""
    folder = Path(db) / "dev-certs"
    return DevPaths(
        ca=str(folder / "ca.pem"),
        chain=str(folder / "chain.pem"),
        key=str(folder / "private_key.pem"),
    )


def ensure_dev_certificates(db: str) -> DevPaths:
    """Make the dev CA and server certificate unless they already exist; return their paths.

    They go first into a new database directory, which is then made 0700 as the store would
    make it. Their folder is 0700 and the private key 0600 from the moment they exist,
    whatever the umask (an existing folder and key are tightened too).
    """
    paths = dev_paths(db)
    folder = os.path.dirname(paths.key)
    try:
        make_private_dir(db)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)  # makedirs' mode is filtered by the umask
        if all(os.path.exists(p) for p in (paths.ca, paths.chain, paths.key)):
            os.chmod(paths.key, 0o600)
            return paths
    except OSError as exc:
        raise ConfigError(f"cannot write dev certificates under {db!r}: {exc.strerror}") from None
    made = subprocess.run(
        [sys.executable, "-m", "jackrabbit_host.devcerts", db],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode:
        raise ConfigError(
            made.stderr.strip().splitlines()[-1] if made.stderr else "cannot make dev certificates"
        )
    return paths


def _make(db: str) -> None:
    """Make the certificates (in the child process): the CA, then the server's."""
    import trustme  # only here: see the module docstring

    paths = dev_paths(db)
    try:
        ca = trustme.CA(organization_name="jackrabbit dev CA")
        server = ca.issue_cert(*DEV_NAMES)
        ca.cert_pem.write_to_path(paths.ca)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        with os.fdopen(os.open(paths.key, flags, 0o600), "wb") as key:
            os.fchmod(key.fileno(), 0o600)  # an older key file keeps its mode on O_TRUNC
            key.write(server.private_key_pem.bytes())
        with open(paths.chain, "wb") as chain:
            for blob in server.cert_chain_pems:
                chain.write(blob.bytes())
    except OSError as exc:
        sys.exit(f"cannot write dev certificates under {db!r}: {exc.strerror}")


if __name__ == "__main__":
    _make(sys.argv[1])
