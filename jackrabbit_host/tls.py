"""The one TLS policy of both shells' servers, and the client context of the terminal commands.

Server side (protocol §1.1): TLS 1.2 at least; under TLS 1.2 only AEAD suites with forward
secrecy (ECDHE key exchange with AES-GCM or ChaCha20-Poly1305, no CBC, no RSA key exchange),
the "intermediate" list of Mozilla's server-side TLS guidance; TLS 1.3's suites are all AEAD
and left as OpenSSL has them. ALPN offers ``http/1.1`` only (WebSocket upgrades, ``/healthz``
and ``/metrics`` all speak it). Renegotiation is off: a client could otherwise make the server
redo the expensive half of a handshake as often as it likes.

With ``--client-ca`` the server asks every client for a certificate, optionally, and verifies
one that is presented against that CA (a certificate that fails fails the handshake); which
principal a verified one is, the ``--auth`` file says (protocol §11.3).

Certificate problems are ``ConfigError``\\ s with a one-line message naming the flag and the
file at fault, which the shells print and exit 2.

SIGHUP reloads the files without a restart (protocol §11.9): ``reload_certificates`` builds a
fresh context from them and has the listener's context move every handshake that starts from
then on over to it (its ``sni_callback``, which OpenSSL calls for every ClientHello, SNI or
not). Connections already open keep the certificate they started with; nothing is dropped,
and the shells keep the one context they were given.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable
from typing import Final, NoReturn

from jackrabbit_core import Config, ConfigError
from jackrabbit_host.devcerts import ensure_dev_certificates

#: The TLS 1.2 suites accepted: ECDHE, then AES-GCM or ChaCha20-Poly1305.
TLS12_CIPHERS: Final = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
ALPN: Final = ("http/1.1",)


def server_context(config: Config) -> ssl.SSLContext:
    """The server's TLS context with ``config``'s certificate chain and private key loaded
    (for ``--dev``, made first if they do not exist yet).

    The shells call it before they open the store, so that a certificate error leaves no new
    ``--db`` directory behind. Raises ``ConfigError`` with one line when either file is
    missing, unreadable, not PEM, encrypted, or when the key does not match the certificate.
    """
    if config.dev:
        ensure_dev_certificates(config.db)
    return _load(config)


def reload_certificates(context: ssl.SSLContext, config: Config) -> None:
    """Load ``config``'s certificate files again (SIGHUP, protocol §11.9): handshakes that
    start from now on on ``context`` (one ``server_context`` made) use them; connections
    already open keep theirs. Raises ``ConfigError`` as ``server_context`` does, and then
    nothing changes."""
    fresh = _load(config)
    context.sni_callback = functools.partial(_move_to, fresh)


def _move_to(
    fresh: ssl.SSLContext,
    connection: ssl.SSLObject | ssl.SSLSocket,
    server_name: str | None,
    context: ssl.SSLContext,
) -> None:
    """During a ClientHello: serve this handshake from ``fresh`` (its certificate, key and
    client CA)."""
    connection.context = fresh


def _load(config: Config) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(list(ALPN))
    files = (("--chain-cert", config.chain_cert), ("--private-key", config.private_key))
    for flag, path in files:
        _check_readable(flag, path, "certificate file")
    try:
        context.load_cert_chain(config.chain_cert, config.private_key, _no_passphrase(config))
    except ssl.SSLError as exc:
        raise ConfigError(_load_error(config, exc)) from None
    except OSError as exc:  # the files changed since they were checked
        raise ConfigError(f"cannot load the TLS certificate: {exc.strerror or exc}") from None
    if config.client_ca is not None:
        _check_readable("--client-ca", config.client_ca, "CA file")
        try:
            context.load_verify_locations(cafile=config.client_ca)
        except (ssl.SSLError, ValueError):
            raise ConfigError(f"--client-ca {config.client_ca}: no PEM certificate") from None
        except OSError as exc:
            raise ConfigError(f"--client-ca {config.client_ca}: {exc.strerror or exc}") from None
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(ca: str | None) -> ssl.SSLContext:
    """A client context trusting the CA file ``ca`` (``--ca``), or the system's CAs if None.

    Raises ``ConfigError`` naming the file when it is missing, unreadable or not PEM.
    """
    if ca is None:
        return ssl.create_default_context()
    _check_readable("--ca", ca, "CA file")
    try:
        return ssl.create_default_context(cafile=ca)
    except (ssl.SSLError, ValueError):
        raise ConfigError(f"--ca {ca}: no PEM certificate in the file") from None
    except OSError as exc:
        raise ConfigError(f"--ca {ca}: {exc.strerror or exc}") from None


def _check_readable(flag: str, path: str, what: str) -> None:
    """Open ``path`` to read: the ssl module's own errors do not say which file failed."""
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        hint = " (use --dev to make one)" if flag in ("--chain-cert", "--private-key") else ""
        raise ConfigError(f"{what} not found: {flag} {path}{hint}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} is a directory: {flag} {path}") from None
    except PermissionError:
        raise ConfigError(f"{what} not readable (permission denied): {flag} {path}") from None
    except OSError as exc:
        raise ConfigError(f"{what} cannot be read: {flag} {path}: {exc.strerror}") from None


def _no_passphrase(config: Config) -> Callable[[], bytes]:
    """A password callback that refuses: without one OpenSSL would prompt on the terminal."""

    def refuse() -> NoReturn:
        raise ConfigError(
            f"the private key is encrypted: --private-key {config.private_key} "
            "(the server needs it without a passphrase)"
        )

    return refuse


def _load_error(config: Config, exc: ssl.SSLError) -> str:
    text = str(exc)
    if "KEY_VALUES_MISMATCH" in text or "key values mismatch" in text:
        return (
            f"the private key does not match the certificate: --chain-cert {config.chain_cert}"
            f" / --private-key {config.private_key}"
        )
    try:  # which of the two is not PEM? the chain parses alone if it is the key
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=config.chain_cert)
    except (ssl.SSLError, ValueError):
        return f"no PEM certificate in --chain-cert {config.chain_cert}"
    return f"no usable PEM private key in --private-key {config.private_key}"
