"""The wire vectors (``vectors/*.json``): consistent in themselves, and true of a live server.

- The committed files are exactly what ``vectors/make_vectors.py`` writes.
- Every vector's ``hex`` is the MessagePack encoding of its ``json``; every event vector
  matches its own ``shape``.
- Every request and invalid vector's script holds against the server under test.
- Every event a live server sent during those scripts has the shape of an event vector
  (key order included for original deliveries), and every event vector was seen.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import pytest

from .client import Client
from .conftest import Spawner
from .harness import Target
from .wire import (
    VECTORS,
    Script,
    WireMap,
    decode,
    encode,
    from_json,
    load,
    mismatch,
    readable,
)

REQUESTS = load("requests")
INVALID = load("invalid")
EVENTS = load("events")
BY_NAME = {v["name"]: v for v in REQUESTS + INVALID}
LIVE = REQUESTS + INVALID


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


def test_vector_files_are_current() -> None:
    """``make_vectors.py`` writes exactly the committed files (run it after an edit)."""
    spec = importlib.util.spec_from_file_location("make_vectors", VECTORS / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, text in module.build().items():
        assert (VECTORS / name).read_text("utf-8") == text, f"{name} is stale: run make_vectors"


def test_names_are_unique() -> None:
    names = [v["name"] for v in REQUESTS + INVALID + EVENTS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    "vector",
    [v for v in REQUESTS + INVALID + EVENTS if v["json"] is not None],
    ids=_ids([v for v in REQUESTS + INVALID + EVENTS if v["json"] is not None]),
)
def test_hex_is_the_json(vector: dict[str, Any]) -> None:
    """``hex`` is the MessagePack encoding of ``json``, maps in the order written."""
    assert encode(from_json(vector["json"])).hex() == vector["hex"]


@pytest.mark.parametrize("vector", EVENTS, ids=_ids(EVENTS))
def test_event_vector_has_its_shape(vector: dict[str, Any]) -> None:
    """Each example event matches its own shape."""
    assert mismatch(vector["shape"], decode(bytes.fromhex(vector["hex"]))) is None


def _run(
    vector: dict[str, Any], server: Target, spawn: Spawner, connect: Callable[..., Client],
    queue: str,
) -> Script:  # fmt: skip
    needs = vector.get("needs", {})
    target = server
    if "max_message_bytes" in needs:
        target = spawn("--max-message-bytes", str(needs["max_message_bytes"]))
    script = Script(target, queue, BY_NAME, connect)
    script.run(vector["script"])
    return script


@pytest.mark.parametrize("vector", LIVE, ids=_ids(LIVE))
def test_vector_script_against_server(
    vector: dict[str, Any], server: Target, spawn: Spawner, connect: Callable[..., Client],
    queue: str,
) -> None:  # fmt: skip
    """The server answers the vector exactly as its script says."""
    _run(vector, server, spawn, connect, queue)


def test_live_events_have_the_vector_shapes(
    server: Target, spawn: Spawner, connect: Callable[..., Client], queue: str
) -> None:
    """Every event seen while running the scripts matches an event vector's shape (v1 events
    ignoring key order, original deliveries with it; any reply may add ``req``), and every
    event vector is seen."""
    seen: set[str] = set()
    strays: list[str] = []
    for n, vector in enumerate(v for v in LIVE if not v.get("needs")):
        script = Script(server, f"{queue[:100]}-{n}", BY_NAME, connect)
        try:
            script.run(vector["script"])
        except AssertionError:
            continue  # reported by test_vector_script_against_server
        for event in script.observed:
            forms = [event.value]
            if isinstance(event.value, WireMap) and "req" in dict(event.value):
                forms.append(WireMap((k, v) for k, v in event.value if k != "req"))
            fits = [
                e["name"] for e in EVENTS for form in forms if mismatch(e["shape"], form) is None
            ]
            if not fits:
                strays.append(f"{vector['name']}: {readable(event.value)!r}")
            seen.update(fits)
    assert not strays, f"events of no known shape: {strays}"
    missing = [e["name"] for e in EVENTS if e["name"] not in seen]
    assert not missing, f"event vectors never seen from the server: {missing}"
