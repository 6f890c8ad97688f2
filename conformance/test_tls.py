"""TLS (protocol §1.1): what the server accepts and refuses in a handshake.

- TLS 1.0 and 1.1 are refused.
- Under TLS 1.2 only suites with forward secrecy and authenticated encryption are accepted
  (ECDHE with AES-GCM or ChaCha20-Poly1305): a client offering only CBC suites is refused.
- ALPN, when the client offers it, settles on ``http/1.1``.
- A refused handshake costs nobody else anything: the server goes on answering.

Each refusal is checked against a control: the same client settings complete a handshake
with a server that allows everything (in memory, no network), so the refusal is the server's
doing and not the local OpenSSL's.
"""

from __future__ import annotations

import socket
import ssl
import warnings

import pytest

from .client import http
from .harness import Target

#: TLS 1.2 suites with CBC encryption (with and without ECDHE), and no AEAD one.
CBC_ONLY = "ECDHE+AES+SHA1:ECDHE+AES+SHA256:ECDHE+AES+SHA384:RSA+AES:!AESGCM:!AESCCM:@SECLEVEL=0"
#: Everything OpenSSL still knows how to speak, old versions included.
ANYTHING = "ALL:@SECLEVEL=0"
HANDSHAKE_TIMEOUT = 5.0


def _client(
    version: ssl.TLSVersion, ciphers: str, alpn: list[str] | None = None
) -> ssl.SSLContext:
    """A client speaking only ``version`` with only ``ciphers`` (trusting any certificate:
    what is tested is the server's choice of protocol, not its identity)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = version
        context.maximum_version = version
    context.set_ciphers(ciphers)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def _permissive_server_accepts(client: ssl.SSLContext) -> tuple[str | None, str | None]:
    """Handshake ``client`` with a server that allows every version and suite, over memory
    buffers; return the version and suite agreed (the control of each refusal)."""
    import trustme

    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    server.set_ciphers(ANYTHING)
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_end = client.wrap_bio(to_client, to_server, server_hostname="localhost")
    from_client, from_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_end = server.wrap_bio(from_client, from_server, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):  # a handshake takes a few round trips, never ten
        for name, end in (("client", client_end), ("server", server_end)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        from_client.write(to_server.read())
        to_client.write(from_server.read())
        if all(done.values()):
            cipher = client_end.cipher()
            return client_end.version(), cipher[0] if cipher else None
    raise AssertionError("the in-memory control handshake did not finish")


def _handshake(target: Target, client: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection((target.host, target.port), timeout=HANDSHAKE_TIMEOUT)
    try:
        return client.wrap_socket(raw, server_hostname=target.host)
    except BaseException:
        raw.close()
        raise


def _assert_refused(target: Target, client: ssl.SSLContext) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(target, client).close()
    assert http(target, "/healthz").status == 200  # and everyone else carries on


@pytest.mark.parametrize(
    ("version", "name"),
    [(ssl.TLSVersion.TLSv1, "TLSv1"), (ssl.TLSVersion.TLSv1_1, "TLSv1.1")],
    ids=["TLS1.0", "TLS1.1"],
)
def test_tls_before_1_2_is_refused(server: Target, version: ssl.TLSVersion, name: str) -> None:
    client = _client(version, ANYTHING)
    assert _permissive_server_accepts(client)[0] == name  # this client can speak it
    _assert_refused(server, client)


def test_tls_1_2_with_only_cbc_suites_is_refused(server: Target) -> None:
    """Current server-side guidance: TLS 1.2 with AEAD suites only (no CBC)."""
    client = _client(ssl.TLSVersion.TLSv1_2, CBC_ONLY)
    version, cipher = _permissive_server_accepts(client)
    assert version == "TLSv1.2" and cipher is not None and "GCM" not in cipher
    _assert_refused(server, client)


def test_tls_1_2_gets_ecdhe_with_an_aead_suite_and_alpn_http_1_1(server: Target) -> None:
    """Offered everything, a TLS 1.2 client is given forward secrecy and an AEAD suite; ALPN
    settles on http/1.1 even when h2 is offered first."""
    client = _client(ssl.TLSVersion.TLSv1_2, ANYTHING, alpn=["h2", "http/1.1"])
    with _handshake(server, client) as tls:
        assert tls.version() == "TLSv1.2"
        cipher = tls.cipher()
        assert cipher is not None
        name = cipher[0]
        assert name.startswith("ECDHE-"), name
        assert "GCM" in name or "CHACHA20-POLY1305" in name, name
        assert tls.selected_alpn_protocol() == "http/1.1"


def test_tls_1_3_is_accepted(server: Target) -> None:
    client = _client(ssl.TLSVersion.TLSv1_3, ANYTHING, alpn=["http/1.1"])
    with _handshake(server, client) as tls:
        assert tls.version() == "TLSv1.3"
        assert tls.selected_alpn_protocol() == "http/1.1"
