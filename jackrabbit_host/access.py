"""Access control's host side (protocol §11): the ``--auth`` file, SIGHUP, the audit log and
the ``token`` command, shared by both shells.

The rules themselves are the core's (``jackrabbit_core.access``): this module reads the TOML
file into an ``AccessPolicy`` value, re-reads it (and the certificates) on SIGHUP, writes the
core's refusals to the log, tells the core where a connection comes from, and makes tokens.

The file (``docs/security.md`` has a worked example)::

    [[principal]]
    name = "billing-api"
    token_sha256 = "<lowercase hex SHA-256 of the token>"
    allow = ["consume:orders", "produce:orders-*"]

    [[principal]]
    name = "edge-gateway"
    client_cert_subject = "CN=edge.example.com,OU=clients,O=Example"
    allow = ["produce:*"]

    [anonymous]
    allow = ["produce:legacy"]
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import ssl
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from jackrabbit_core.access import ANONYMOUS, AccessPolicy, Denial, Grant, Principal, token_digest
from jackrabbit_core.config import Config
from jackrabbit_core.exceptions import ConfigError

from . import subjects
from .tls import reload_certificates

__all__ = [
    "AuditLog",
    "TokenCommand",
    "load_access",
    "open_access_warning",
    "parse_token",
    "policy_from",
    "reload_settings",
    "remote_of",
    "run_token",
]

log = logging.getLogger("jackrabbit.access")

#: Random bytes in a token made by ``token``: 256 bits, far past guessing.
TOKEN_BYTES: Final = 32
#: Refusals logged per second at most, on average, with bursts of ``AUDIT_BURST``; the rest
#: are counted and the count logged with the next line that gets through.
AUDIT_RATE: Final = 20.0
AUDIT_BURST: Final = 100.0
MAX_NAME_CHARS: Final = 128

_PRINCIPAL_KEYS: Final = frozenset({"name", "token_sha256", "client_cert_subject", "allow"})
_HEX: Final = frozenset("0123456789abcdef")


# -- the --auth file ------------------------------------------------------------------------


def load_access(config: Config) -> AccessPolicy | None:
    """The policy of ``config.auth`` (None without ``--auth``). Raises ``ConfigError`` with
    one line naming the file and what is wrong in it; the shells call it before they open
    the store, so a bad file leaves no new ``--db`` behind."""
    if config.auth is None:
        if config.client_ca is not None:
            raise ConfigError("--client-ca needs --auth: the file says what each client may do")
        return None
    try:
        with open(config.auth, "rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"--auth {config.auth}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--auth {config.auth}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"--auth {config.auth}: {exc.strerror or exc}") from None
    try:
        return policy_from(data, client_ca=config.client_ca is not None)
    except ValueError as exc:
        raise ConfigError(f"--auth {config.auth}: {exc}") from None


def policy_from(data: Mapping[str, Any], *, client_ca: bool) -> AccessPolicy:
    """The policy a parsed ``--auth`` file describes; ``ValueError`` saying what is wrong.

    Every key is checked (a misspelt one is an error, not a grant silently missing). A
    principal needs a ``name``, ``allow`` and at least one credential: ``token_sha256``, or
    ``client_cert_subject``, which needs ``--client-ca`` (``client_ca``) to be verifiable.
    """
    unknown = set(data) - {"principal", "anonymous"}
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r} (expected [[principal]] tables "
                         "and an [anonymous] table)")
    tables = data.get("principal", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValueError("principal must be a list of tables, written [[principal]]")
    principals = [_principal(table, i, client_ca) for i, table in enumerate(tables, 1)]
    anonymous = data.get("anonymous", {})
    if not isinstance(anonymous, dict):
        raise ValueError("anonymous must be a table, written [anonymous]")
    if set(anonymous) - {"allow"}:
        raise ValueError(f"[anonymous]: unknown key {sorted(set(anonymous) - {'allow'})[0]!r}")
    grants = _grants(anonymous.get("allow", []), "[anonymous]")
    return AccessPolicy(principals, grants)


def _principal(table: dict[str, Any], index: int, client_ca: bool) -> Principal:
    name = table.get("name")
    where = f"principal {name!r}" if isinstance(name, str) else f"[[principal]] number {index}"
    unknown = set(table) - _PRINCIPAL_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    name = _check_name(name, where)
    if "allow" not in table:
        raise ValueError(f"{where}: needs allow = [\"ACTION:PATTERN\", ...]")
    grants = _grants(table["allow"], where)
    token = table.get("token_sha256")
    digest = None
    if token is not None:
        if not isinstance(token, str) or len(token) != 64 or not set(token) <= _HEX:
            raise ValueError(f"{where}: token_sha256 must be 64 lowercase hex digits")
        digest = bytes.fromhex(token)
    subject = table.get("client_cert_subject")
    if subject is not None:
        if not isinstance(subject, str):
            raise ValueError(f"{where}: client_cert_subject must be a string")
        if not client_ca:
            raise ValueError(f"{where}: client_cert_subject needs --client-ca to verify with")
        try:
            subject = subjects.canonical(subject)
        except ValueError as exc:
            raise ValueError(f"{where}: client_cert_subject: {exc}") from None
    if digest is None and subject is None:
        raise ValueError(f"{where}: needs token_sha256 or client_cert_subject")
    return Principal(name, grants, digest, subject)


def _check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        raise ValueError(f"{where}: name must be a string of 1 to {MAX_NAME_CHARS} characters")
    if not name.isprintable():
        raise ValueError(f"{where}: name must be printable")
    if name == ANONYMOUS:
        raise ValueError(f"{where}: the name {ANONYMOUS!r} is reserved for [anonymous]")
    return name


def _grants(value: object, where: str) -> tuple[Grant, ...]:
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise ValueError(f"{where}: allow must be a list of strings \"ACTION:PATTERN\"")
    try:
        return tuple(Grant.parse(text) for text in value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


# -- connections, the audit log, SIGHUP --------------------------------------------------------


def remote_of(peername: object, peercert: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """What ``Server.connect`` wants to know of a connection: the peer's IP address (from
    ``getpeername()``) and the subject of its client certificate, which the TLS layer has
    verified if it is there at all (``getpeercert()``; a certificate that fails the check
    fails the handshake)."""
    address = peername[0] if isinstance(peername, tuple) and peername else ""
    subject = peercert.get("subject") if peercert else None
    text = subjects.from_certificate(subject) if subject else None
    return str(address), text


class AuditLog:
    """The core's ``audit``: one log line per refusal, with the peer's address and the
    principal's name when known, never a token (protocol §11.6). Bounded: past
    ``AUDIT_RATE`` lines a second (bursts of ``AUDIT_BURST``) lines are dropped and counted."""

    __slots__ = ("_allowance", "_at", "_dropped")

    def __init__(self) -> None:
        self._allowance = AUDIT_BURST
        self._at = time.monotonic()
        self._dropped = 0

    def __call__(self, denial: Denial) -> None:
        now = time.monotonic()
        self._allowance = min(AUDIT_BURST, self._allowance + (now - self._at) * AUDIT_RATE)
        self._at = now
        if self._allowance < 1:
            self._dropped += 1
            return
        self._allowance -= 1
        dropped, self._dropped = self._dropped, 0
        who = f" {denial.principal}" if denial.principal else ""
        where = f" on queue {denial.queue}" if denial.queue else ""
        more = f" ({dropped} more refusals not logged)" if dropped else ""
        log.warning(
            "refused%s from %s%s: %s (%s)%s",
            who,
            denial.address or "?",
            where,
            denial.message,
            denial.reason,
            more,
        )


def reload_settings(config: Config, context: ssl.SSLContext) -> AccessPolicy | None:
    """SIGHUP (protocol §11.9): load the certificate chain and key (and ``--client-ca``)
    again for the handshakes to come, and re-read ``--auth``. Returns the new policy for
    ``Server.set_access``, or None when there is none to set (no ``--auth``, or the file is
    broken: the previous policy stays). Each outcome is logged on stderr, with the reason
    of a failure; a failure of one half does not stop the other."""
    try:
        reload_certificates(context, config)
    except ConfigError as exc:
        log.error("SIGHUP: kept the previous certificate: %s", exc)
    else:
        log.warning("SIGHUP: reloaded the certificate %s", config.chain_cert)
    if config.auth is None:
        return None
    try:
        policy = load_access(config)
    except ConfigError as exc:
        log.error("SIGHUP: kept the previous access policy: %s", exc)
        return None
    count = len(policy.principals) if policy is not None else 0
    log.warning("SIGHUP: reloaded %d principals from %s", count, config.auth)
    return policy


def open_access_warning(config: Config) -> str | None:
    """What the server says once at start when anyone who reaches it may do anything: no
    ``--auth`` and an address other than loopback (protocol §11.1)."""
    if config.auth is not None:
        return None
    host = config.host.strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (
        f"warning: no --auth: anyone who reaches {config.host}:{config.port} may add to, take "
        "from and read every queue (see docs/security.md)"
    )


# -- the token command ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenCommand:
    """``token NAME --allow GRANT ...``: make a principal's token."""

    name: str
    grants: tuple[Grant, ...]


def parse_token(name: str, allow: Sequence[str]) -> TokenCommand:
    """Check the ``token`` command's arguments; ``ConfigError`` with one line if wrong."""
    try:
        _check_name(name, "token")
        grants = _grants(list(allow), "--allow")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not grants:
        raise ConfigError("give at least one --allow ACTION:PATTERN")
    return TokenCommand(name, grants)


def run_token(command: TokenCommand) -> int:
    """Print a new random token (once: it is stored nowhere) on the first line of stdout,
    then the ``[[principal]]`` block holding its hash, for the ``--auth`` file."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    digest = token_digest(token.encode()).hex()
    allow = ", ".join(json.dumps(str(grant)) for grant in command.grants)
    print(token)
    print()
    print("[[principal]]")
    print(f"name = {json.dumps(command.name, ensure_ascii=False)}")
    print(f'token_sha256 = "{digest}"')
    print(f"allow = [{allow}]")
    print(
        "the first line is the token: give it to the client now, it is not stored anywhere; "
        "add the block to the --auth file and send the server SIGHUP",
        file=sys.stderr,
    )
    return 0
