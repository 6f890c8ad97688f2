"""Where a client connects (``Endpoint.parse``): the URL's path and the ``queue`` argument
name the queue together, and anything unusable is a one-line ``ValueError``."""

from __future__ import annotations

import pytest

from jackrabbit_core.client import Endpoint


@pytest.mark.parametrize(
    ("url", "queue", "path"),
    [
        ("wss://h", None, "/"),
        ("wss://h/", None, "/"),
        ("wss://h", "jobs", "/queues/jobs"),
        ("wss://h/", "jobs", "/queues/jobs"),  # "/" names no queue: the argument does
        ("wss://h/queues/jobs", None, "/queues/jobs"),  # the path alone
        ("wss://h/queues/jobs", "jobs", "/queues/jobs"),  # both, agreeing
        ("wss://h/queues/jobs?x=1", None, "/queues/jobs"),
        ("wss://h", "default", "/"),
        ("wss://h/queues/default", None, "/"),
    ],
)
def test_the_queue_comes_from_the_path_or_the_argument(
    url: str, queue: str | None, path: str
) -> None:
    endpoint = Endpoint.parse(url, queue)
    assert endpoint.path == path
    assert endpoint.queue == (path.removeprefix("/queues/") if path != "/" else "default")


def test_host_and_port() -> None:
    assert Endpoint.parse("wss://example.org").authority == "example.org:443"
    assert Endpoint.parse("wss://[::1]:8443/queues/q").authority == "[::1]:8443"


@pytest.mark.parametrize(
    ("url", "queue", "message"),
    [
        ("ws://h", None, "not a wss:// URL: 'ws://h' (jackrabbit speaks only TLS; expected"),
        ("h:8443", None, "not a wss:// URL: 'h:8443' (expected wss://HOST[:PORT][/queues/NAME])"),
        ("wss://h:99999", None, "bad port in URL 'wss://h:99999'"),
        ("wss:///queues/q", None, "no host in URL"),
        ("wss://h/other", None, "the path of 'wss://h/other' names no queue"),
        ("wss://h/queues/-x", None, "names no queue"),
        ("wss://h", "bad name", "invalid queue name 'bad name'"),
        ("wss://h/queues/a", "b", "queue 'b' conflicts with the URL's path '/queues/a'"),
        ("wss://h/queues/a", "default", "queue 'default' conflicts"),
    ],
)
def test_unusable_urls_and_conflicts(url: str, queue: str | None, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        Endpoint.parse(url, queue)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
