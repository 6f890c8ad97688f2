"""Access control's host side (``jackrabbit_host.access``, ``subjects``, ``tls``): the
``--auth`` file and each way it can be wrong, certificate subjects, the certificate reload,
the audit log, the open-access warning and the ``token`` command (once per shell)."""

from __future__ import annotations

import hashlib
import logging
import ssl
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from jackrabbit_core import Config, ConfigError
from jackrabbit_core.access import Denial, token_digest
from jackrabbit_host import subjects
from jackrabbit_host.access import (
    AUDIT_BURST,
    AuditLog,
    load_access,
    open_access_warning,
    reload_settings,
    remote_of,
)
from jackrabbit_host.options import parse_args
from jackrabbit_host.tls import reload_certificates, server_context

from ..support import Certs, Programs, write_certs
from .conftest import one_line_error

DIGEST = hashlib.sha256(b"secret").hexdigest()

GOOD = f"""
[[principal]]
name = "billing-api"
token_sha256 = "{DIGEST}"
allow = ["consume:orders", "produce:orders-*", "read:orders", "admin:*"]

[[principal]]
name = "edge-gateway"
client_cert_subject = "commonName = edge.example.com, O=Example"
allow = ["produce:*"]

[anonymous]
allow = ["produce:legacy"]
"""


def _load(tmp_path: Path, text: str, client_ca: bool = True) -> Config:
    path = tmp_path / "auth.toml"
    path.write_text(text)
    return Config(auth=str(path), client_ca="ca.pem" if client_ca else None)


def test_the_contract_s_example_file_loads(tmp_path: Path) -> None:
    policy = load_access(_load(tmp_path, GOOD))
    assert policy is not None
    billing, edge = policy.principals
    assert billing.token_sha256 == token_digest(b"secret")
    assert [str(g) for g in billing.grants][1] == "produce:orders-*"
    assert edge.subject == "CN=edge.example.com,O=Example"
    assert policy.anonymous.actions_on("legacy") == {"produce"}
    assert load_access(Config()) is None


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("[[principal]\n", "not valid TOML"),
        ("[[principals]]\nname='x'", "unknown key 'principals'"),
        ("principal = 3", "list of tables"),
        (f"[[principal]]\nname='x'\ntoken_sha256='{DIGEST}'", "needs allow"),
        (f"[[principal]]\nname='x'\ntoken_sha256='{DIGEST}'\nallow=['write:x']", "unknown action"),
        (f"[[principal]]\nname='x'\ntoken_sha256='{DIGEST}'\nalow=[]\nallow=[]", "'alow'"),
        ("[[principal]]\nname='x'\nallow=[]", "needs token_sha256 or client_cert_subject"),
        (f"[[principal]]\nname='x'\ntoken_sha256='{DIGEST.upper()}'\nallow=[]", "lowercase hex"),
        ("[[principal]]\nname='x'\ntoken_sha256='secret'\nallow=[]", "64 lowercase hex"),
        (f"[[principal]]\ntoken_sha256='{DIGEST}'\nallow=[]", "name must be a string"),
        (f"[[principal]]\nname='anonymous'\ntoken_sha256='{DIGEST}'\nallow=[]", "reserved"),
        (
            f"[[principal]]\nname='x'\ntoken_sha256='{DIGEST}'\nallow=[]\n"
            f"[[principal]]\nname='y'\ntoken_sha256='{DIGEST}'\nallow=[]",
            "token must be unique",
        ),
        ("[[principal]]\nname='x'\nclient_cert_subject='CN'\nallow=[]", "client_cert_subject"),
        ("[anonymous]\nallow='produce:*'", "allow must be a list"),
        ("[anonymous]\ndeny=[]", "unknown key 'deny'"),
    ],
)
def test_each_fault_in_the_file_is_one_line_naming_it(
    tmp_path: Path, text: str, fault: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_access(_load(tmp_path, text))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("--auth "), message
    assert fault in message, message


def test_a_certificate_subject_needs_client_ca_and_client_ca_needs_auth(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs --client-ca"):
        load_access(_load(tmp_path, GOOD, client_ca=False))
    with pytest.raises(ConfigError, match="--client-ca needs --auth"):
        load_access(Config(client_ca="ca.pem"))
    with pytest.raises(ConfigError, match="no such file"):
        load_access(Config(auth=str(tmp_path / "missing.toml")))


# -- subjects --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("CN=edge.example.com", "CN=edge.example.com"),
        ("cn = edge.example.com , o=Example", "CN=edge.example.com,O=Example"),
        ("commonName=a\\,b+UID=7,organizationName=x\\ ", "CN=a\\,b+UID=7,O=x\\ "),
        ("CN=\\#1,OU=Clients", "CN=\\#1,OU=Clients"),
        ("CN=caf\u00e9", "CN=caf\u00e9"),
        ("CN=\\41b", "CN=Ab"),
    ],
)
def test_subjects_are_compared_in_one_canonical_form(written: str, canonical: str) -> None:
    assert subjects.canonical(written) == canonical
    assert subjects.canonical(canonical) == canonical


@pytest.mark.parametrize("written", ["", "CN", "CN=", "=x", "CN=a\\", "CN=\\C3\\A9"])
def test_bad_subjects_are_refused(written: str) -> None:
    with pytest.raises(ValueError):
        subjects.canonical(written)


def test_a_verified_certificate_s_subject_reads_as_the_file_writes_it() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert(
        common_name="edge.example.com", organization_name="Example", organization_unit_name="ops"
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server)
    server.verify_mode = ssl.CERT_OPTIONAL
    ca.configure_trust(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    cert.configure_cert(client)
    served = _handshake(server, client).server
    address, subject = remote_of(("10.1.2.3", 4567), served.getpeercert())
    assert (address, subject) == ("10.1.2.3", "CN=edge.example.com,OU=ops,O=Example")
    assert remote_of(("::1", 1, 0, 0), None) == ("::1", None)


@dataclass
class _Ends:
    client: ssl.SSLObject
    server: ssl.SSLObject


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> _Ends:
    """A whole handshake over memory buffers: both ends, the server's verdict on a client
    certificate included (under TLS 1.3 it comes after the client is done)."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    ends = _Ends(
        client.wrap_bio(c_in, c_out, server_hostname="localhost"),
        server.wrap_bio(s_in, s_out, server_side=True),
    )
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", ends.client), ("server", ends.server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            ends.client.write(b"x")
            s_in.write(c_out.read())
            ends.server.read(1)
            return ends
    raise AssertionError("the in-memory handshake did not finish")


# -- reloading certificates (protocol §11.9) --------------------------------------------------


def test_a_reload_serves_new_handshakes_from_the_new_files(tmp_path: Path) -> None:
    ca = trustme.CA()
    certs = write_certs(tmp_path, ca)
    config = Config(chain_cert=certs.chain, private_key=certs.key)
    context = server_context(config)
    client = ssl.create_default_context(cafile=certs.ca)
    first = _peer_org(context, client)
    renewed = ca.issue_cert("127.0.0.1", "localhost", organization_name="renewed")
    renewed.private_key_pem.write_to_path(certs.key)
    Path(certs.chain).write_bytes(b"".join(blob.bytes() for blob in renewed.cert_chain_pems))
    assert _peer_org(context, client) == first  # nothing changes before the reload
    reload_certificates(context, config)
    assert _peer_org(context, client) == "renewed"

    Path(certs.key).write_text("not a key")
    with pytest.raises(ConfigError):
        reload_certificates(context, config)
    assert _peer_org(context, client) == "renewed"  # a broken file changes nothing


def _peer_org(server: ssl.SSLContext, client: ssl.SSLContext) -> str:
    """The organization in the certificate the server presents to ``client``."""
    cert = _handshake(server, client).client.getpeercert()
    assert cert, "no handshake"
    fields = {name: value for rdn in cert["subject"] for name, value in rdn}
    return str(fields["organizationName"])


def test_sighup_reload_logs_each_outcome_and_keeps_a_broken_file_s_policy(
    tmp_path: Path, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    auth = tmp_path / "auth.toml"
    auth.write_text("[[principal]\n")
    config = Config(chain_cert=certs.chain, private_key=certs.key, auth=str(auth))
    context = server_context(config)
    caplog.set_level(logging.WARNING, "jackrabbit.access")
    assert reload_settings(config, context) is None  # the file is broken
    assert "kept the previous access policy: --auth " in caplog.text
    assert "not valid TOML" in caplog.text
    assert "reloaded the certificate" in caplog.text  # the other half still happened
    auth.write_text(f"[[principal]]\nname='x'\ntoken_sha256='{DIGEST}'\nallow=['read:*']\n")
    policy = reload_settings(config, context)
    assert policy is not None and policy.principals[0].name == "x"
    assert "reloaded 1 principals" in caplog.text


# -- the audit log ----------------------------------------------------------------------------


def test_the_audit_log_names_peer_and_principal_and_is_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "jackrabbit.access")
    audit = AuditLog()
    audit(Denial("no_grant", "10.0.0.7", "billing-api", "orders", "no grant on queue orders"))
    (line,) = caplog.messages
    assert line.startswith("refused billing-api from 10.0.0.7 on queue orders: no grant")
    for _ in range(int(AUDIT_BURST) * 3):
        audit(Denial("invalid_credentials", "10.0.0.8", None, None, "the token is not valid"))
    assert AUDIT_BURST <= len(caplog.messages) < AUDIT_BURST * 1.5


def test_anyone_may_do_anything_is_said_only_off_loopback_without_auth() -> None:
    assert open_access_warning(Config(host="0.0.0.0")) is not None
    assert open_access_warning(Config(host="2001:db8::1")) is not None
    for host in ("127.0.0.1", "::1", "[::1]", "localhost", "127.1.2.3"):
        assert open_access_warning(Config(host=host)) is None, host
    assert open_access_warning(Config(host="0.0.0.0", auth="auth.toml")) is None


# -- the token command ------------------------------------------------------------------------


def test_the_token_command_prints_a_token_once_and_its_block(
    programs: Programs, tmp_path: Path
) -> None:
    result = programs.run("token", "billing-api", "--allow", "consume:orders", "--allow", "admin:*")
    assert result.returncode == 0, result.stderr
    token, blank, *block = result.stdout.splitlines()
    assert blank == "" and len(token) >= 43  # 256 bits in URL-safe base64
    parsed = tomllib.loads("\n".join(block))
    (principal,) = parsed["principal"]
    assert principal == {
        "name": "billing-api",
        "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
        "allow": ["consume:orders", "admin:*"],
    }
    assert token not in result.stderr
    again = programs.run("token", "billing-api", "--allow", "consume:orders")
    assert again.stdout.splitlines()[0] != token
    (tmp_path / "auth.toml").write_text("\n".join(block))
    assert load_access(Config(auth=str(tmp_path / "auth.toml"))) is not None


@pytest.mark.parametrize(
    ("args", "fault"),
    [
        (["x"], "at least one --allow"),
        (["x", "--allow", "write:orders"], "unknown action"),
        (["anonymous", "--allow", "read:*"], "reserved"),
    ],
)
def test_the_token_command_refuses_bad_arguments(
    programs: Programs, args: list[str], fault: str
) -> None:
    assert fault in one_line_error(programs.run("token", *args), 2)


def test_the_access_flags_parse_into_the_config() -> None:
    config = parse_args(
        ["--auth", "a.toml", "--client-ca", "ca.pem", "--allow-origin", "https://a.example",
         "--allow-origin=http://localhost:8080"]
    )  # fmt: skip
    assert (config.auth, config.client_ca) == ("a.toml", "ca.pem")
    assert config.allow_origins == ("https://a.example", "http://localhost:8080")
    assert parse_args([]).allow_origins == ()
    for bad in ("app.example.com", "https://a.example/path"):
        with pytest.raises(ConfigError, match="not a web origin"):
            parse_args(["--allow-origin", bad])
