"""The TLS policy both shells load (``jackrabbit_host.tls``): what it allows, and one clear
line for each way the certificate files can be wrong. Handshakes against the running shells
are in ``conformance/test_tls.py``."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from jackrabbit_core import Config, ConfigError
from jackrabbit_host.tls import client_context, server_context

from ..support import Certs, write_certs


def _config(chain: str | Path, key: str | Path) -> Config:
    return Config(chain_cert=str(chain), private_key=str(key))


def _error(config: Config) -> str:
    with pytest.raises(ConfigError) as caught:
        server_context(config)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_policy_tls_1_2_minimum_ecdhe_aead_only(certs: Certs) -> None:
    context = server_context(_config(certs.chain, certs.key))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_RENEGOTIATION
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12, "no TLS 1.2 suite left"
    for name in tls12:
        assert name.startswith("ECDHE-"), name
        assert "GCM" in name or "CHACHA20-POLY1305" in name, name


def test_each_missing_file_is_named(tmp_path: Path, certs: Certs) -> None:
    missing = tmp_path / "nope.pem"
    message = _error(_config(missing, certs.key))
    assert message.startswith("certificate file not found: --chain-cert ")
    assert str(missing) in message
    message = _error(_config(certs.chain, missing))
    assert message.startswith("certificate file not found: --private-key ")
    assert str(missing) in message


def test_a_directory_is_named(tmp_path: Path, certs: Certs) -> None:
    message = _error(_config(certs.chain, tmp_path))
    assert "is a directory" in message and "--private-key" in message


def test_key_of_another_certificate(tmp_path: Path, certs: Certs) -> None:
    other = write_certs(tmp_path)
    assert "does not match" in _error(_config(certs.chain, other.key))


def test_files_that_are_not_pem_are_named(tmp_path: Path, certs: Certs) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert _error(_config(junk, certs.key)) == f"no PEM certificate in --chain-cert {junk}"
    message = _error(_config(certs.chain, junk))
    assert message == f"no usable PEM private key in --private-key {junk}"


def test_an_encrypted_key_is_refused_without_a_prompt(tmp_path: Path) -> None:
    """Without a password callback OpenSSL would ask on the terminal and wait."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(chain))
    private = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    message = _error(_config(chain, key))
    assert message.startswith("the private key is encrypted: --private-key ")


def test_client_context_names_a_bad_ca_file(tmp_path: Path, certs: Certs) -> None:
    assert client_context(certs.ca).verify_mode == ssl.CERT_REQUIRED
    assert client_context(None).check_hostname  # the system's CAs
    with pytest.raises(ConfigError, match=r"^CA file not found: --ca /nope\.pem$"):
        client_context("/nope.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("nothing here\n")
    with pytest.raises(ConfigError, match="no PEM certificate") as caught:
        client_context(str(junk))
    assert str(junk) in str(caught.value)
