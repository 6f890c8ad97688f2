"""Access control with ``--auth FILE`` (CONTRACT §4, protocol §10), on both shells.

- Upgrades: no credentials (and anonymous may do nothing on the queue) 401 with
  ``WWW-Authenticate: Bearer``; an invalid token 401; a known principal without a grant on
  the queue 403; a token in the query string is never accepted. A token is accepted as
  ``Authorization: Bearer`` or as the ``jackrabbit.bearer.TOKEN`` subprotocol, which is never
  echoed (``jackrabbit.v1`` is selected).
- Commands: a v1 request whose action is not granted gets a ``forbidden`` error and the
  connection stays open; an original client is closed with 1008. Anonymous grants let
  original clients work on the queues the file names.
- Client certificates verified against ``--client-ca`` name principals by subject; an unknown
  subject gets only the anonymous grants; a certificate from another CA fails the handshake.
- ``/metrics`` needs ``admin``; ``/healthz`` stays open; refusals are counted by reason.
- ``--allow-origin``: an upgrade from another ``Origin`` is 403.
- Repeated invalid tokens slow their address down, and no other.
- SIGHUP re-reads the file (open connections that lost the grant they use are closed with
  1008 ``access revoked``; a broken file changes nothing and says why on stderr) and the
  certificate files (new handshakes get the new certificate; open connections carry on).
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.exceptions import InvalidMessage, InvalidStatus

from .client import Client, Response, http, read_response, tls_socket
from .conftest import EXTERNAL, Spawner
from .harness import Certificates, ServerProcess, Target

PRODUCER, CONSUMER, ADMIN = "producer-token-0123456789", "consumer-token-0123456789", "admin-t"
#: The organisation and unit of the client certificates the client CA issues.
ORG = ("Example", "clients")
EDGE = f"CN=edge.example.com,OU={ORG[1]},O={ORG[0]}"
WAIT = 10.0


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def auth_file(*, producer: bool = True, consumer: tuple[str, ...] = ("orders",)) -> str:
    """The ``--auth`` file of these scenarios (``producer=False``: its principal removed)."""
    grants = ", ".join(f'"consume:{q}"' for q in consumer)
    text = f"""
[[principal]]
name = "consumer"
token_sha256 = "{sha256(CONSUMER)}"
allow = [{grants}, "produce:orders"]

[[principal]]
name = "admin"
token_sha256 = "{sha256(ADMIN)}"
allow = ["admin:*"]

[[principal]]
name = "edge"
client_cert_subject = "{EDGE}"
allow = ["produce:*", "consume:edge-*"]

[anonymous]
allow = ["produce:legacy"]
"""
    if producer:
        text += f"""
[[principal]]
name = "producer"
token_sha256 = "{sha256(PRODUCER)}"
allow = ["produce:orders", "produce:orders-*"]
"""
    return text


class ClientCerts:
    """A client CA and certificates it issued, as PEM files."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        self.ca_file = folder / "client-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.folder = folder

    def issue(self, common_name: str, ca: trustme.CA | None = None) -> trustme.LeafCert:
        return (ca or self.ca).issue_cert(
            common_name=common_name, organization_name=ORG[0], organization_unit_name=ORG[1]
        )


def with_cert(target: Target, cert: trustme.LeafCert) -> ssl.SSLContext:
    context = target.ssl_context()
    cert.configure_cert(context)
    return context


def start(
    shell: str, folder: Path, certs: Certificates, text: str, *extra: str
) -> tuple[ServerProcess, Path, ClientCerts]:
    folder.mkdir(parents=True, exist_ok=True)
    auth = folder / "auth.toml"
    auth.write_text(text)
    clients = ClientCerts(folder / "clients")
    flags = ["--auth", str(auth), "--client-ca", str(clients.ca_file), *extra]
    return ServerProcess(shell, folder, certs, flags).start(), auth, clients


@pytest.fixture(scope="module")
def authed(
    shell: str, tmp_path_factory: pytest.TempPathFactory, certs: Certificates
) -> Iterator[tuple[ServerProcess, ClientCerts]]:
    """One server per shell with the file of ``auth_file()``, a client CA and an allowed
    origin, shared by the scenarios that change nothing in it."""
    if shell == EXTERNAL:
        pytest.skip("needs a server started with --auth")
    folder = tmp_path_factory.mktemp(f"auth-{shell}")
    server, _, clients = start(
        shell, folder, certs, auth_file(), "--allow-origin", "https://app.example.com"
    )
    yield server, clients
    server.stop()


@pytest.fixture
def target(authed: tuple[ServerProcess, ClientCerts]) -> ServerProcess:
    return authed[0]


def bearer(token: str) -> dict[str, Any]:
    return {"additional_headers": {"Authorization": f"Bearer {token}"}}


def refused(target: Target, queue: str | None, **options: Any) -> Any:
    """The HTTP response of an upgrade the server must refuse (``status_code``,
    ``headers``)."""
    with pytest.raises(InvalidStatus) as caught:
        Client.open(target, queue, **options).close()
    return caught.value.response


def upgrade(
    target: Target,
    path: str,
    headers: str = "",
    *,
    source: str | None = None,
    timeout: float = WAIT,
) -> Response:
    """A raw upgrade request (from local address ``source``); the server's answer to it."""
    sock = _socket(target, source, timeout)
    with sock:
        sock.sendall(_upgrade_request(target, path, headers))
        return read_response(sock, timeout)


def _socket(target: Target, source: str | None, timeout: float) -> ssl.SSLSocket:
    raw = socket.create_connection(
        (target.host, target.port), timeout=timeout, source_address=(source, 0) if source else None
    )
    return target.ssl_context().wrap_socket(raw, server_hostname=target.host)


def _upgrade_request(target: Target, path: str, headers: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
        f"Sec-WebSocket-Version: 13\r\n{headers}\r\n"
    ).encode()


def metrics(target: Target, token: str) -> str:
    response = http(target, "/metrics", headers=f"Authorization: Bearer {token}\r\n")
    assert response.status == 200, response
    return response.body.decode()


# -- upgrades ---------------------------------------------------------------------------------


def test_no_credentials_401_invalid_token_401_no_grant_403(target: ServerProcess) -> None:
    nobody = refused(target, "orders")
    assert nobody.status_code == 401
    assert nobody.headers["WWW-Authenticate"].startswith("Bearer")
    guess = refused(target, "orders", **bearer("guess"))
    assert guess.status_code == 401
    assert 'error="invalid_token"' in guess.headers["WWW-Authenticate"]
    assert refused(target, "billing", **bearer(PRODUCER)).status_code == 403
    assert refused(target, None, **bearer(PRODUCER)).status_code == 403  # the default queue


def test_a_token_in_the_query_string_is_never_accepted(target: ServerProcess) -> None:
    for query in (f"?token={PRODUCER}", f"?access_token={PRODUCER}"):
        assert upgrade(target, f"/queues/orders{query}").status == 401


def test_a_bearer_token_admits_and_a_v1_command_without_its_grant_is_forbidden(
    target: ServerProcess, connect: Callable[..., Client], queue: str
) -> None:
    name = f"orders-{queue}"[:128]
    producer = connect(target, name, **bearer(PRODUCER))
    assert producer.add(b"one")["seq"] == 1
    producer.send({"command": "take", "req": 7})
    producer.expect("error", code="forbidden", req=7)
    assert producer.add(b"two")["seq"] == 2  # the connection stays open


def test_the_bearer_subprotocol_admits_and_is_never_echoed(
    target: ServerProcess, connect: Callable[..., Client]
) -> None:
    offered = ["jackrabbit.v1", f"jackrabbit.bearer.{CONSUMER}"]
    consumer = connect(target, "orders", subprotocols=offered)
    assert consumer.ws.subprotocol == "jackrabbit.v1"
    response = consumer.ws.response
    assert response is not None and CONSUMER not in str(response.headers)
    consumer.take()
    # offered alone (not a browser), it still authenticates; nothing is selected
    alone = connect(target, "orders", subprotocols=[f"jackrabbit.bearer.{PRODUCER}"])
    assert alone.ws.subprotocol is None
    alone.add(b"x")


def test_the_original_dialect_works_where_anonymous_may_and_nowhere_else(
    target: ServerProcess, connect: Callable[..., Client], queue: str
) -> None:
    """An original client cannot send credentials: the anonymous grants are what it gets."""
    name = f"legacy-{queue}"[:128]
    assert refused(target, name).status_code == 401  # not covered by produce:legacy
    producer = connect(target, "legacy")
    producer.send({"command": {0: None}, "data": b"from 0.0.3"})
    producer.send({"command": {1: None}, "data": b""})  # Take needs consume
    closed = producer.expect_close()
    assert (closed.code, closed.before) == (1008, [])
    assert "consume" in closed.reason
    reader = connect(target, "legacy", **bearer(ADMIN))  # admin only: admitted, forbidden
    reader.send({"command": "take"})
    reader.expect("error", code="forbidden")


def test_metrics_need_admin_and_count_refusals_by_reason(target: ServerProcess) -> None:
    refused(target, "orders", **bearer("guess-for-metrics"))
    nobody = http(target, "/metrics")
    assert nobody.status == 401 and nobody.headers["www-authenticate"].startswith("Bearer")
    assert http(target, "/metrics", headers=f"Authorization: Bearer {PRODUCER}\r\n").status == 403
    assert http(target, "/healthz").status == 200
    body = metrics(target, ADMIN)
    counts = {
        line.split('"')[1]: int(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("jackrabbit_auth_failures_total{")
    }
    assert counts["invalid_credentials"] >= 1 and counts["no_grant"] >= 1, counts
    assert counts["no_credentials"] >= 1, counts
    for secret in (PRODUCER, CONSUMER, ADMIN, "guess-for-metrics"):
        assert secret not in body
    logged = target.stderr_tail(400)
    assert "guess-for-metrics" not in logged and PRODUCER not in logged
    assert "refused producer from 127.0.0.1" in logged


# -- client certificates ----------------------------------------------------------------------


def test_a_verified_client_certificate_names_its_principal_by_subject(
    authed: tuple[ServerProcess, ClientCerts], connect: Callable[..., Client], queue: str
) -> None:
    target, clients = authed
    edge = with_cert(target, clients.issue("edge.example.com"))
    producer = connect(target, queue, ssl=edge)
    assert producer.add(b"by certificate")["seq"] == 1
    consumer = connect(target, f"edge-{queue}"[:128], ssl=edge)
    consumer.take(role="active")
    stranger = with_cert(target, clients.issue("stranger.example.com"))
    assert refused(target, queue, ssl=stranger).status_code == 401  # anonymous: nothing here
    connect(target, "legacy", ssl=stranger).send({"command": {0: None}, "data": b"ok"})
    outsider = with_cert(target, clients.issue("edge.example.com", ca=trustme.CA()))
    with pytest.raises((ssl.SSLError, OSError, InvalidMessage)):
        Client.open(target, queue, ssl=outsider).add(b"never")


# -- origins ----------------------------------------------------------------------------------


def test_an_upgrade_from_a_page_of_another_origin_is_403(target: ServerProcess) -> None:
    token = f"Authorization: Bearer {PRODUCER}\r\n"
    evil = upgrade(target, "/queues/orders", token + "Origin: https://evil.example\r\n")
    assert evil.status == 403
    for allowed in ("Origin: https://app.example.com\r\n", ""):
        assert upgrade_status(target, "/queues/orders", token + allowed) == 101


def upgrade_status(target: Target, path: str, headers: str) -> int:
    """The status of an upgrade that may succeed (a 101 has no body to wait for)."""
    with tls_socket(target) as sock:
        sock.sendall(_upgrade_request(target, path, headers))
        sock.settimeout(WAIT)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


# -- slowing down an address ------------------------------------------------------------------


def test_repeated_invalid_tokens_slow_that_address_and_no_other(target: ServerProcess) -> None:
    """The 127.0.0.0/8 block is all loopback: 127.0.0.3 guesses, 127.0.0.4 does not."""
    path, good = "/queues/orders", f"Authorization: Bearer {PRODUCER}\r\n"
    for _ in range(8):  # five free, then held 0.25 s, 0.5 s and 1 s
        guess = upgrade(target, path, "Authorization: Bearer guess\r\n", source="127.0.0.3")
        assert guess.status == 401
    # the next request from 127.0.0.3 is held 2 s, even with a good token
    with _socket(target, "127.0.0.3", WAIT) as held:
        sent = time.monotonic()
        held.sendall(_upgrade_request(target, path, good))
        assert upgrade_status_from(target, path, good, "127.0.0.4") == 101
        other_answered = time.monotonic()
        held.settimeout(WAIT)
        first = held.recv(4096)
        answered = time.monotonic()
    assert first.startswith(b"HTTP/1.1 101 ")
    assert answered - sent >= 1.9, answered - sent
    assert other_answered < answered


def upgrade_status_from(target: Target, path: str, headers: str, source: str) -> int:
    with _socket(target, source, WAIT) as sock:
        sock.sendall(_upgrade_request(target, path, headers))
        return int(sock.recv(4096).split(b" ", 2)[1])


# -- SIGHUP -----------------------------------------------------------------------------------


def wait_for_stderr(server: ServerProcess, text: str, after: int) -> str:
    """Server stderr past its first ``after`` characters, once it holds ``text``."""
    deadline = time.monotonic() + WAIT
    while True:
        log = (server.workdir / "stderr.log").read_text("utf-8", "replace")[after:]
        if text in log:
            return log
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} on stderr within {WAIT}s:\n{log[-2000:]}")
        time.sleep(0.02)  # polling a file, within the bound above


def stderr_size(server: ServerProcess) -> int:
    return len((server.workdir / "stderr.log").read_text("utf-8", "replace"))


def test_sighup_closes_the_connections_that_lost_their_grant_and_a_broken_file_changes_nothing(
    shell: str, tmp_path: Path, certs: Certificates, spawn: Spawner, connect: Callable[..., Client]
) -> None:
    if shell == EXTERNAL:
        pytest.skip("needs a server started with --auth")
    spawn.started.append(server := start(shell, tmp_path / "s", certs, auth_file())[0])
    auth = tmp_path / "s" / "auth.toml"
    producer = connect(server, "orders", **bearer(PRODUCER))
    producer.add(b"one")
    consumer = connect(server, "orders", **bearer(CONSUMER))
    consumer.take(role="active")
    consumer.expect("message", seq=1)
    # the producer's principal goes; the consumer keeps consume (it loses nothing it uses)
    auth.write_text(auth_file(producer=False))
    before = stderr_size(server)
    server.send_signal(signal.SIGHUP)
    closed = producer.expect_close(WAIT)
    assert (closed.code, closed.reason) == (1008, "access revoked")
    wait_for_stderr(server, "reloaded", before)
    consumer_producer = connect(server, "orders", **bearer(CONSUMER))
    consumer_producer.add(b"two")
    consumer.expect("message", seq=2)
    assert refused(server, "orders", **bearer(PRODUCER)).status_code == 401

    # a broken file: said on stderr, and the previous policy stays
    auth.write_text(auth_file(producer=True) + "\n[[principal]\n")
    before = stderr_size(server)
    server.send_signal(signal.SIGHUP)
    log = wait_for_stderr(server, "kept the previous access policy", before)
    assert "not valid TOML" in log
    assert refused(server, "orders", **bearer(PRODUCER)).status_code == 401
    consumer_producer.add(b"three")
    consumer.expect("message", seq=3)

    # the consumer loses consume: closed, while it is the active consumer
    auth.write_text(auth_file(consumer=("other",)))
    server.send_signal(signal.SIGHUP)
    assert consumer.expect_close(WAIT).code == 1008
    consumer_producer.add(b"four")  # produce:orders is still granted


def test_sighup_reloads_renewed_certificates_without_dropping_connections(
    shell: str, tmp_path: Path, spawn: Spawner, connect: Callable[..., Client]
) -> None:
    """What a certbot deploy hook does: new files in place, then SIGHUP."""
    if shell == EXTERNAL:
        pytest.skip("needs a server of its own")
    ca = trustme.CA()
    folder = tmp_path / "certs"
    folder.mkdir()
    certs = Certificates(folder / "ca.pem", folder / "chain.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(certs.ca))
    _install(ca.issue_cert("127.0.0.1", "localhost", organization_name="first"), certs)
    server = ServerProcess(shell, tmp_path / "server", certs, ("--fsync", "never"))
    spawn.started.append(server.start())
    assert _served_organization(server) == "first"
    consumer = connect(server, "renewal")
    consumer.take(role="active")

    _install(ca.issue_cert("127.0.0.1", "localhost", organization_name="renewed"), certs)
    assert _served_organization(server) == "first"  # nothing changes before the signal
    before = stderr_size(server)
    server.send_signal(signal.SIGHUP)
    wait_for_stderr(server, "reloaded the certificate", before)
    assert _served_organization(server) == "renewed"
    producer = connect(server, "renewal")
    producer.add(b"after the renewal")
    consumer.expect("message", seq=1, data=b"after the renewal")  # still connected

    # a broken key on disk: the server says so and keeps serving the renewed certificate
    certs.key.write_text("not a key\n")
    before = stderr_size(server)
    server.send_signal(signal.SIGHUP)
    wait_for_stderr(server, "kept the previous certificate", before)
    assert _served_organization(server) == "renewed"


def _install(cert: trustme.LeafCert, certs: Certificates) -> None:
    """Replace the files the way certbot does: write new ones, rename them into place."""
    for path, data in (
        (certs.key, cert.private_key_pem.bytes()),
        (certs.chain, b"".join(blob.bytes() for blob in cert.cert_chain_pems)),
    ):
        temporary = path.with_suffix(".new")
        temporary.write_bytes(data)
        os.replace(temporary, path)


def _served_organization(target: Target) -> str:
    with tls_socket(target) as sock:
        cert = sock.getpeercert()
    assert cert is not None
    fields = dict(pair for rdn in cert["subject"] for pair in rdn)
    return str(fields["organizationName"])
