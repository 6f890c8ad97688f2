"""Handshake and routing (CONTRACT §1 and §2): which paths upgrade, which answer plain HTTPS.

- ``/`` is the queue ``default``; ``/queues/NAME`` the queue NAME when NAME matches
  ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``; an upgrade to any other name is refused with 404.
- ``GET /healthz`` answers 200; ``GET /metrics`` answers Prometheus text.
- A request that is neither an upgrade nor a known endpoint gets a 4xx; a malformed
  upgrade gets 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from .client import Client, RawWebSocket, http
from .harness import Target

# -- upgrades ------------------------------------------------------------------------------


def test_root_is_the_default_queue(server: Target, connect: Callable[..., Client]) -> None:
    """An add at ``/`` and one at ``/queues/default`` land in one queue: consecutive seqs."""
    root = connect(server, None)
    named = connect(server, "default")
    first = root.add(b"via /")
    second = named.add(b"via /queues/default")
    assert second["seq"] == first["seq"] + 1


@pytest.mark.parametrize(
    "name",
    ["a", "Z", "0", "a.b_c-d", "q" * 128, "9-._", "A1-b2.c3_d4"],
    ids=["one-letter", "upper", "digit", "punctuation", "128-chars", "digit-then-punct", "mixed"],
)
def test_valid_queue_names_upgrade(
    server: Target, connect: Callable[..., Client], name: str
) -> None:
    """Every name the pattern allows opens a WebSocket and accepts an add."""
    client = connect(server, name)
    added = client.add(b"x")
    assert isinstance(added["seq"], int) and added["seq"] >= 1


@pytest.mark.parametrize(
    "path",
    [
        "/queues/",
        "/queues/" + "q" * 129,
        "/queues/.hidden",
        "/queues/-dash",
        "/queues/_under",
        "/queues/a%20b",
        "/queues/a/b",
        "/queues/caf%C3%A9",
        "/queues/a:b",
        "/queue/a",
        "/nope",
        "/queues",
    ],
    ids=[
        "empty", "129-chars", "leading-dot", "leading-dash", "leading-underscore", "space",
        "slash", "non-ascii", "colon", "singular-prefix", "unknown", "no-slash",
    ],
)  # fmt: skip
def test_upgrade_to_invalid_queue_is_404(server: Target, path: str) -> None:
    """An upgrade to a path that names no valid queue is answered 404 (no WebSocket)."""
    with pytest.raises(ConnectionError, match=r"'HTTP/1\.[01] 404"):
        RawWebSocket.connect(server, path)


def test_malformed_upgrade_is_400(server: Target) -> None:
    """An upgrade without ``Sec-WebSocket-Key`` is malformed: 400."""
    headers = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    response = http(server, "/queues/q", headers=headers)
    assert response.status == 400, response


def test_upgrade_with_bad_key_is_400(server: Target) -> None:
    """An upgrade whose ``Sec-WebSocket-Key`` is not 16 base64 bytes is malformed: 400."""
    headers = (
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: not-a-key\r\n"
    )
    response = http(server, "/queues/q", headers=headers)
    assert response.status == 400, response


# -- plain HTTPS -----------------------------------------------------------------------------


def test_healthz_is_200(server: Target) -> None:
    """``GET /healthz`` answers 200 on the WebSocket port."""
    assert http(server, "/healthz").status == 200


def test_metrics_is_prometheus_text(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """``GET /metrics`` answers 200 with Prometheus text naming ``jackrabbit_`` metrics."""
    connect(server, queue).add(b"counted")
    response = http(server, "/metrics")
    assert response.status == 200
    assert response.headers.get("content-type", "").startswith("text/plain"), response.headers
    text = response.body.decode("utf-8")
    sample = re.compile(
        r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+]?([0-9.eE+-]+|NaN|[+-]?Inf)( [0-9]+)?$"
    )
    names = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert not line or re.match(r"^# (HELP|TYPE) \S+", line) or line.startswith("# "), line
            continue
        assert sample.match(line), f"not a Prometheus sample line: {line!r}"
        names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    assert any(n.startswith("jackrabbit_") for n in names), names


def test_unknown_path_is_4xx(server: Target) -> None:
    """A plain request to an unknown path gets a 4xx status."""
    status = http(server, "/no/such/thing").status
    assert 400 <= status < 500, status


def test_plain_get_of_a_queue_is_4xx(server: Target) -> None:
    """A plain GET (no upgrade) of a queue path is not an endpoint: a 4xx status."""
    status = http(server, "/queues/q").status
    assert 400 <= status < 500, status


def test_server_serves_after_http_errors(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """After refused requests the server still upgrades and confirms adds."""
    for path in ("/nope", "/queues/.x"):
        http(server, path)
    assert connect(server, queue).add(b"still here")["seq"] == 1
