"""Relaying a connection to the node that serves its queue (protocol §10.3), the parts both
shells share: the request the relay sends, the proof it adds, the owner's check of it, the TLS
context of the link and the answer when the owner cannot be reached.

A node that does not serve a client's queue opens TLS to the owner's ``--advertise`` address,
sends the client's upgrade request again with one more header, then pipes bytes both ways: the
WebSocket session (and its heartbeats) runs end to end between the client and the owner, so
every client, the original 0.0.3 ones included, works unchanged.

The header is ``jackrabbit-relay: NODE TIME PEER MAC``: the relaying node, Unix seconds, the
client's address as the relay saw it, and the hex HMAC-SHA256 of those and the request target
under the cluster's secret (a random value kept in the cluster's database, which every node
can read and nothing else needs). The owner accepts the header only with a valid MAC made
within ``PROOF_WINDOW`` seconds of its own clock, so it can trust the client address it claims;
a forged or stale one is refused 403. A client's own ``jackrabbit-relay`` header never gets
through a relay: the relay drops it before adding its own.

The relay checks the owner's certificate against the system's CAs and every certificate of its
own ``--chain-cert`` (as trust anchors), for the host name of the owner's address: nodes with
one shared certificate, or certificates from one CA, trust each other without more set-up.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from jackrabbit_core import Authenticator, Config, ConfigError, Refusal
from jackrabbit_core.connection import UpgradeRequest
from jackrabbit_core.http1 import response
from jackrabbit_core.placement import RELAY_HEADER

from .tls import ALPN

__all__ = ["PROOF_WINDOW", "UNREACHABLE", "claimed_peer", "gate", "link_context", "request_head"]

#: Seconds a proof stays good, either side of the owner's clock.
PROOF_WINDOW: Final = 30.0
#: What a relay answers its client when the owner cannot be reached: retry shortly (by then
#: the owner's lease has ended, or it is back).
_AWAY: Final = b"the node serving this queue is away; retry\n"
UNREACHABLE: Final = response(
    503,
    (
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(_AWAY)),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ),
    _AWAY,
)
#: Seconds a relay may take to reach the owner and finish TLS with it.
CONNECT_TIMEOUT: Final = 5.0


def _mac(secret: bytes, node: str, when: int, peer: str, target: str) -> str:
    message = f"{node}\n{when}\n{peer}\n{target}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def request_head(
    request: UpgradeRequest, *, node: str, peer: str, secret: bytes, now: float
) -> bytes:
    """The upgrade request a relay sends the owner: the client's, less any relay header of
    its own, plus this node's proof."""
    when = int(now)
    lines = [f"GET {request.target} HTTP/1.1".encode()]
    lines += [name + b": " + value for name, value in request.headers if name != RELAY_HEADER]
    proof = f"{node} {when} {peer} {_mac(secret, node, when, peer, request.target)}"
    lines.append(RELAY_HEADER + b": " + proof.encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def claimed_peer(request: UpgradeRequest, secret: bytes, now: float) -> str | None:
    """The client address a relay vouches for in ``request``, or None when it carries no
    valid proof (none, several, malformed, stale, or a wrong MAC)."""
    values = [value for name, value in request.headers if name == RELAY_HEADER]
    if len(values) != 1:
        return None
    parts = values[0].decode("latin-1").split(" ")
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    node, when, peer, mac = parts[0], int(parts[1]), parts[2], parts[3]
    if abs(now - when) > PROOF_WINDOW:
        return None
    if not hmac.compare_digest(mac, _mac(secret, node, when, peer, request.target)):
        return None
    return peer


def gate(
    secret: bytes, clock: Callable[[], float], inner: Authenticator | None = None
) -> Authenticator:
    """An authentication hook (protocol §1.4) that refuses an upgrade carrying a relay header
    without a valid proof (403), then asks ``inner``, if any."""

    def authenticate(request: UpgradeRequest) -> Refusal | None:
        vouched = any(name == RELAY_HEADER for name, _ in request.headers)
        if vouched and claimed_peer(request, secret, clock()) is None:
            return Refusal(403, "invalid relay proof")
        return None if inner is None else inner(request)

    return authenticate


def link_context(config: Config) -> ssl.SSLContext:
    """The TLS client context of relay links: the system's CAs and every certificate of this
    node's ``--chain-cert`` as trust anchors, host names checked."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(list(ALPN))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    try:
        context.load_verify_locations(cafile=config.chain_cert)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"cannot trust --chain-cert {config.chain_cert}: {exc}") from None
    return context


def address_of(advertise: str) -> tuple[str, int]:
    """``wss://HOST:PORT`` as a host and a port (443 when none is given)."""
    parts = urlsplit(advertise)
    if parts.scheme != "wss" or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(f"--advertise must look like wss://HOST:PORT, got {advertise!r}")
    try:
        port = parts.port or 443
    except ValueError:
        raise ConfigError(f"--advertise has a bad port: {advertise!r}") from None
    return parts.hostname, port


def peer_name(address: object) -> str:
    """A socket's peer address as ``HOST:PORT`` (``[HOST]:PORT`` for IPv6) for the proof."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = str(address[0]), int(address[1])
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return "unknown"
