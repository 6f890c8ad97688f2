"""Both runtimes' ``Client`` with a token, against a real server started with ``--auth``
(protocol §11): admitted and served by their grants, refused with ``AccessDenied`` otherwise,
and a command outside the grants refused with ``forbidden`` on a connection that stays."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from jackrabbit_core.client_errors import AccessDenied

from .conftest import Runtime, Start

pytestmark = pytest.mark.timeout(90)

TOKEN, PRODUCER = "app-token-" + "7" * 32, "producer-token-" + "3" * 32


def _principal(name: str, token: str, *grants: str) -> str:
    allow = ", ".join(f'"{grant}"' for grant in grants)
    digest = hashlib.sha256(token.encode()).hexdigest()
    return f'[[principal]]\nname = "{name}"\ntoken_sha256 = "{digest}"\nallow = [{allow}]\n'


def test_tokens_against_a_server_with_auth(
    runtime: Runtime, start: Start, tmp_path: Path
) -> None:
    auth = tmp_path / "auth.toml"
    auth.write_text(
        _principal("app", TOKEN, "produce:orders", "consume:orders")
        + _principal("producer", PRODUCER, "produce:orders")
    )
    server = start(auth=str(auth))
    app = runtime.connect(server.url, "orders", ca=server.ca, token=TOKEN)
    assert app.add(b"with a token") == 1
    first = next(app.take())
    assert first.data == b"with a token"
    first.ack()

    producer = runtime.connect(server.url, "orders", ca=server.ca, token=PRODUCER)
    with pytest.raises(AccessDenied) as forbidden:
        producer.take()
    assert forbidden.value.code == "forbidden"
    assert producer.add(b"still connected") == 2

    for queue, token, code in (
        ("orders", None, "unauthorized"),
        ("orders", "not-a-token", "unauthorized"),
        ("billing", TOKEN, "forbidden"),
    ):
        with pytest.raises(AccessDenied) as denied:
            runtime.connect(server.url, queue, ca=server.ca, token=token)
        assert denied.value.code == code
        assert TOKEN not in str(denied.value)
