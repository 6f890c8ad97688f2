"""Development certificates for ``--dev``: made once with ``trustme``, then reused.

A newcomer's first minute should not involve OpenSSL. ``--dev`` keeps a private CA and a
server certificate for ``localhost``, ``127.0.0.1`` and ``::1`` under ``DB/dev-certs/``;
clients trust the CA file, whose path the server prints. Besides the store, this is the only
module of the core that touches the disk, and only at start-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .exceptions import ConfigError

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
    """Make the dev CA and server certificate unless they already exist; return their paths."""
    paths = dev_paths(db)
    if all(os.path.exists(p) for p in (paths.ca, paths.chain, paths.key)):
        return paths
    import trustme  # only --dev pays for loading it (about 8 MB and 0.2 s)

    try:
        os.makedirs(os.path.dirname(paths.ca), exist_ok=True)
        ca = trustme.CA(organization_name="jackrabbit dev CA")
        server = ca.issue_cert(*DEV_NAMES)
        ca.cert_pem.write_to_path(paths.ca)
        server.private_key_pem.write_to_path(paths.key)
        with open(paths.chain, "wb") as chain:
            for blob in server.cert_chain_pems:
                chain.write(blob.bytes())
        os.chmod(paths.key, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write dev certificates under {db!r}: {exc.strerror}") from None
    return paths
