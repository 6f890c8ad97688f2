"""Write ``requests.json``, ``events.json`` and ``invalid.json``: jackrabbit's wire vectors.

Run ``python conformance/vectors/make_vectors.py`` after changing a vector; the suite checks
that the committed files are what this script writes. It uses only ``msgpack`` (never the
project's code), so the bytes are an independent statement of the contract.

Notation in the JSON files (see ``conformance/README.md``):

- a MessagePack map with only string keys is a JSON object, keys in wire order;
- ``{"$map": [[key, value], ...]}`` is a map written as pairs, in wire order: used when a key
  is not a string, or when the order of the keys is part of the contract;
- ``{"$bin": "68656c6c6f"}`` is a bin value (hex);
- in expected events only: ``{"$type": T}`` stands for any value of type T, one of ``int``,
  ``str``, ``bool``, ``bin``, ``req`` (an int or a str), ``uuid`` (a str in canonical UUID
  form), ``uuid_bytes`` (a bin of 16 bytes), ``ms`` (an int: Unix time in milliseconds),
  ``seconds`` (an int: Unix time in seconds). An object matches a map with exactly its
  keys, in any order; a ``$map`` matches a map with exactly its pairs, in that order.

Scripts: each request and invalid vector has a ``script``, a conversation that exercises it on
one queue that nobody else uses. A step is one of

- ``{"conn": C, "send": NAME}``: send vector NAME's bytes on connection C (a binary message,
  or a text message for vectors whose ``frame`` is ``text``);
- ``{"conn": C, "expect": PATTERN}``: the next message on C is one event matching PATTERN;
- ``{"conn": C, "expect_nothing": true}``: nothing arrives on C for a short while (0.3 s);
- ``{"conn": C, "expect_close": CODE}``: the server closes C with CODE (and a reason);
- ``{"conn": C, "close": true}``: the client closes C normally.

Connections (``"a"``, ``"b"``...) are opened to the queue at their first step, in order.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgpack

HERE = Path(__file__).resolve().parent
FORMAT = "jackrabbit-vectors/1"

EXAMPLE_ID = "0190a5f2-7c1e-7b3d-8e4f-5a6b7c8d9e0f"
EXAMPLE_MS = 1_700_000_000_123


class Pairs(list[tuple[Any, Any]]):
    """A map given as ordered pairs (packed as a map, shown as ``$map``)."""


def _unpairs(obj: Any) -> Any:
    if isinstance(obj, Pairs):
        return {k: _unpairs(v) for k, v in obj}
    if isinstance(obj, dict):
        return {k: _unpairs(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpairs(v) for v in obj]
    return obj


def pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(_unpairs(obj), use_bin_type=True)
    return data


def meaning(obj: Any) -> Any:
    """The JSON notation of a MessagePack value (module docstring)."""
    if isinstance(obj, Pairs) or (
        isinstance(obj, dict) and not all(isinstance(k, str) for k in obj)
    ):
        items = obj if isinstance(obj, Pairs) else list(obj.items())
        return {"$map": [[meaning(k), meaning(v)] for k, v in items]}
    if isinstance(obj, dict):
        return {k: meaning(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [meaning(v) for v in obj]
    if isinstance(obj, bytes):
        return {"$bin": obj.hex()}
    if isinstance(obj, msgpack.ExtType):
        return {"$ext": [obj.code, obj.data.hex()]}
    return obj


def T(name: str) -> dict[str, str]:
    return {"$type": name}


def B(data: bytes) -> dict[str, str]:
    return {"$bin": data.hex()}


def send(conn: str, name: str) -> dict[str, Any]:
    return {"conn": conn, "send": name}


def expect(conn: str, pattern: Any) -> dict[str, Any]:
    return {"conn": conn, "expect": pattern}


def nothing(conn: str) -> dict[str, Any]:
    return {"conn": conn, "expect_nothing": True}


def closes(conn: str, code: int) -> dict[str, Any]:
    return {"conn": conn, "expect_close": code}


def close(conn: str) -> dict[str, Any]:
    return {"conn": conn, "close": True}


# -- expected events ---------------------------------------------------------------------------


def added(seq: Any, **extra: Any) -> dict[str, Any]:
    return {"event": "added", "seq": seq, "id": T("uuid"), "created_at": T("ms"), **extra}


def subscribed_active(**extra: Any) -> dict[str, Any]:
    return {"event": "subscribed", "role": "active", "epoch": T("int"), **extra}


def subscribed_standby(**extra: Any) -> dict[str, Any]:
    return {"event": "subscribed", "role": "standby", **extra}


def message(seq: int, data: bytes, redelivered: bool = False) -> dict[str, Any]:
    return {
        "event": "message",
        "seq": seq,
        "id": T("uuid"),
        "created_at": T("ms"),
        "data": B(data),
        "redelivered": redelivered,
    }


def error(code: Any, **extra: Any) -> dict[str, Any]:
    return {"event": "error", "code": code, "message": T("str"), **extra}


def original_delivery(data: Any) -> dict[str, Any]:
    """An original delivery: exactly these keys, in this order (``data``: bytes or a pattern)."""
    return {
        "$map": [
            ["command", {"$map": [[1, None]]}],
            ["id", T("uuid_bytes")],
            ["created_at", T("seconds")],
            ["published", False],
            ["published_at", 0],
            ["data", B(data) if isinstance(data, bytes) else data],
        ]
    }


def exact_add(size: int) -> dict[str, Any]:
    """An add request that packs to exactly ``size`` bytes."""
    for n in range(size, 0, -1):
        request = {"command": "add", "data": b"x" * n}
        if len(pack(request)) == size:
            return request
    raise ValueError(size)


# -- requests ----------------------------------------------------------------------------------

REQUESTS: list[dict[str, Any]] = [
    {
        "name": "add",
        "dialect": "v1",
        "description": "Append a message.",
        "value": {"command": "add", "data": b"hello"},
        "script": [send("a", "add"), expect("a", added(1)), send("a", "add"),
                   expect("a", added(2))],
    },
    {
        "name": "add_empty",
        "dialect": "v1",
        "description": "Data may be empty.",
        "value": {"command": "add", "data": b""},
        "script": [send("a", "add_empty"), expect("a", added(1)), send("b", "take"),
                   expect("b", subscribed_active()), expect("b", message(1, b""))],
    },
    {
        "name": "add_with_key",
        "dialect": "v1",
        "description": "An idempotent add: the same key again stores nothing and answers the "
        "first message's seq with duplicate: true.",
        "value": {"command": "add", "data": b"hello", "key": "order-17"},
        "script": [send("a", "add_with_key"), expect("a", added(1)),
                   send("a", "add_with_key"), expect("a", added(1, duplicate=True)),
                   send("a", "add"), expect("a", added(2))],
    },
    {
        "name": "add_with_req",
        "dialect": "v1",
        "description": "Any request may carry req (an int or a str); its reply echoes it.",
        "value": {"command": "add", "data": b"hello", "key": "order-17", "req": 1},
        "script": [send("a", "add_with_req"), expect("a", added(1, req=1))],
    },
    {
        "name": "add_with_str_req",
        "dialect": "v1",
        "description": "req as a string.",
        "value": {"command": "add", "data": b"hello", "req": "a-1"},
        "script": [send("a", "add_with_str_req"), expect("a", added(1, req="a-1"))],
    },
    {
        "name": "take",
        "dialect": "v1",
        "description": "Join the consumer line: the first is active (with an epoch), the next "
        "standby; when the active leaves, the standby is promoted and gets the unacked again.",
        "value": {"command": "take"},
        "script": [send("a", "take"), expect("a", subscribed_active()),
                   send("b", "take"), expect("b", subscribed_standby()),
                   send("c", "add"), expect("c", added(1)),
                   expect("a", message(1, b"hello")), close("a"),
                   expect("b", {"event": "active", "epoch": T("int")}),
                   expect("b", message(1, b"hello", redelivered=True))],
    },
    {
        "name": "take_prefetch_1",
        "dialect": "v1",
        "description": "At most one unacknowledged message in flight.",
        "value": {"command": "take", "prefetch": 1},
        "script": [send("a", "add"), expect("a", added(1)), send("a", "add"),
                   expect("a", added(2)), send("b", "take_prefetch_1"),
                   expect("b", subscribed_active()), expect("b", message(1, b"hello")),
                   nothing("b"), send("b", "ack_1"), expect("b", message(2, b"hello"))],
    },
    {
        "name": "take_with_req",
        "dialect": "v1",
        "description": "take with prefetch and req.",
        "value": {"command": "take", "prefetch": 100, "req": 2},
        "script": [send("a", "take_with_req"), expect("a", subscribed_active(req=2))],
    },
    {
        "name": "ack_1",
        "dialect": "v1",
        "description": "Cumulative ack of every delivered message up to seq 1. No reply.",
        "value": {"command": "ack", "seq": 1},
        "script": [send("a", "add"), expect("a", added(1)), send("b", "take_prefetch_1"),
                   expect("b", subscribed_active()), expect("b", message(1, b"hello")),
                   send("b", "ack_1"), nothing("b"), send("a", "add"), expect("a", added(2)),
                   expect("b", message(2, b"hello"))],
    },
    {
        "name": "ack_with_req",
        "dialect": "v1",
        "description": "An ack with req: a successful ack still has no reply.",
        "value": {"command": "ack", "seq": 1, "req": 3},
        "script": [send("a", "add"), expect("a", added(1)), send("b", "take"),
                   expect("b", subscribed_active()), expect("b", message(1, b"hello")),
                   send("b", "ack_with_req"), nothing("b")],
    },
    {
        "name": "handover",
        "dialect": "v1",
        "description": "Planned switch: the old active gets standby, the next gets active, "
        "both with the new epoch.",
        "value": {"command": "handover"},
        "script": [send("a", "take"), expect("a", subscribed_active()),
                   send("b", "take"), expect("b", subscribed_standby()),
                   send("a", "handover"), expect("a", {"event": "standby", "epoch": T("int")}),
                   expect("b", {"event": "active", "epoch": T("int")})],
    },
    {
        "name": "handover_with_req",
        "dialect": "v1",
        "description": "handover with req (here refused: nobody waits).",
        "value": {"command": "handover", "req": "h-1"},
        "script": [send("a", "take"), expect("a", subscribed_active()),
                   send("a", "handover_with_req"), expect("a", error("no_standby", req="h-1"))],
    },
    {
        "name": "original_add",
        "dialect": "original",
        "description": "0.0.3 Add (rmp_serde::to_vec_named). Never answered.",
        "value": Pairs([("command", {0: None}), ("data", b"hello")]),
        "script": [send("a", "original_add"), nothing("a"), send("b", "take"),
                   expect("b", subscribed_active()), expect("b", message(1, b"hello"))],
    },
    {
        "name": "original_add_array",
        "dialect": "original",
        "description": "0.0.3 Add in the array form (rmp_serde::to_vec).",
        "value": [{0: None}, b"hello"],
        "script": [send("a", "original_add_array"), nothing("a"), send("b", "take"),
                   expect("b", subscribed_active()), expect("b", message(1, b"hello"))],
    },
    {
        "name": "original_take",
        "dialect": "original",
        "description": "0.0.3 Take: no reply; deliveries in the original format.",
        "value": Pairs([("command", {1: None}), ("data", b"")]),
        "script": [send("b", "add"), expect("b", added(1)), send("a", "original_take"),
                   expect("a", original_delivery(b"hello")), send("b", "add"),
                   expect("b", added(2)), expect("a", original_delivery(b"hello"))],
    },
    {
        "name": "original_take_array",
        "dialect": "original",
        "description": "0.0.3 Take in the array form.",
        "value": [{1: None}, b""],
        "script": [send("b", "add"), expect("b", added(1)), send("a", "original_take_array"),
                   expect("a", original_delivery(b"hello"))],
    },
]  # fmt: skip

# -- invalid input -----------------------------------------------------------------------------


def _after_error(conn: str, code: str, name: str, **extra: Any) -> list[dict[str, Any]]:
    """Send NAME, expect the v1 error, then show the connection still works."""
    return [send(conn, name), expect(conn, error(code, **extra)), send(conn, "add"),
            expect(conn, added(1))]  # fmt: skip


def _v1_bad(name: str, description: str, value: Any, code: str = "bad_request",
            raw: bytes | None = None, **extra: Any) -> dict[str, Any]:  # fmt: skip
    vector: dict[str, Any] = {"name": name, "dialect": "v1", "description": description}
    if raw is not None:
        vector["raw"] = raw
    else:
        vector["value"] = value
    vector["expect"] = {"error": code}
    vector["script"] = _after_error("a", code, name, **extra)
    return vector


def _original_bad(name: str, description: str, value: Any, code: int) -> dict[str, Any]:
    return {"name": name, "dialect": "original", "description": description, "value": value,
            "expect": {"close": code}, "script": [send("a", name), closes("a", code)]}  # fmt: skip


ADD_HEAD = b"\x82\xa7command\xa3add\xa4data"

INVALID: list[dict[str, Any]] = [
    {"name": "text_frame", "dialect": "v1", "frame": "text",
     "description": "A text message (here JSON) is refused: close 1003.",
     "raw": b'{"command": "add", "data": "hello"}', "expect": {"close": 1003},
     "script": [send("a", "text_frame"), closes("a", 1003)]},
    _v1_bad("empty_message", "An empty binary message.", None, raw=b""),
    _v1_bad("not_msgpack", "0xc1 is never used by MessagePack.", None, raw=b"\xc1"),
    _v1_bad("truncated", "A map cut short.", None,
            raw=pack({"command": "add", "data": b"hello"})[:-3]),
    _v1_bad("trailing_bytes", "Two objects in one message.", None,
            raw=pack({"command": "add", "data": b"x"}) + b"\xc0"),
    _v1_bad("deeply_nested", "2,000 nested maps (more than 1024 levels).", None,
            raw=b"\x81\xa1k" * 2000 + b"\xc0"),
    _v1_bad("huge_declared_length", "A bin declared 2 GiB long in a short message.", None,
            raw=ADD_HEAD + b"\xc6\x7f\xff\xff\xff"),
    _v1_bad("not_a_map", "A request must be a map.", 42),
    _v1_bad("no_command", "A map without command.", {"data": b"hello"}),
    _v1_bad("command_not_str", "command must be a str.", {"command": 1, "data": b"hello"}),
    _v1_bad("add_without_data", "add needs data.", {"command": "add"}),
    _v1_bad("add_data_str", "data must be bin, not str.", {"command": "add", "data": "hello"}),
    _v1_bad("add_key_int", "key must be a str.", {"command": "add", "data": b"x", "key": 17}),
    _v1_bad("take_prefetch_str", "prefetch must be an int.",
            {"command": "take", "prefetch": "10"}),
    _v1_bad("take_prefetch_zero", "prefetch is at least 1.", {"command": "take", "prefetch": 0}),
    _v1_bad("ack_seq_str", "seq must be an int.", {"command": "ack", "seq": "1"}),
    _v1_bad("req_float", "req must be an int or a str; the error has no req.",
            {"command": "add", "data": b"x", "req": 1.5}),
    _v1_bad("unknown_command", "An unknown command; req is echoed.",
            {"command": "purge", "req": 4}, code="unknown_command", req=4),
    {"name": "ack_not_subscribed", "dialect": "v1",
     "description": "ack from a connection that never took.",
     "value": {"command": "ack", "seq": 1}, "expect": {"error": "not_subscribed"},
     "script": _after_error("a", "not_subscribed", "ack_not_subscribed")},
    {"name": "handover_not_subscribed", "dialect": "v1",
     "description": "handover from a connection that never took.",
     "value": {"command": "handover"}, "expect": {"error": "not_subscribed"},
     "script": _after_error("a", "not_subscribed", "handover_not_subscribed")},
    {"name": "ack_from_standby", "dialect": "v1", "description": "A standby holds nothing.",
     "value": {"command": "ack", "seq": 1}, "expect": {"error": "not_active"},
     "script": [send("a", "take"), expect("a", subscribed_active()), send("b", "take"),
                expect("b", subscribed_standby()), send("b", "ack_from_standby"),
                expect("b", error("not_active"))]},
    {"name": "ack_never_delivered", "dialect": "v1",
     "description": "ack of a seq above the highest delivered.",
     "value": {"command": "ack", "seq": 9, "req": 3}, "expect": {"error": "bad_ack"},
     "script": [send("a", "take"), expect("a", subscribed_active()),
                send("a", "ack_never_delivered"), expect("a", error("bad_ack", req=3))]},
    {"name": "ack_zero", "dialect": "v1", "description": "ack of a seq below 1.",
     "value": {"command": "ack", "seq": 0}, "expect": {"error": "bad_ack"},
     "script": [send("a", "take"), expect("a", subscribed_active()), send("a", "ack_zero"),
                expect("a", error("bad_ack"))]},
    {"name": "second_take", "dialect": "v1", "description": "take twice on one connection.",
     "value": {"command": "take", "req": 2}, "expect": {"error": "bad_request"},
     "script": [send("a", "take"), expect("a", subscribed_active()), send("a", "second_take"),
                expect("a", error("bad_request", req=2))]},
    {"name": "handover_alone", "dialect": "v1", "description": "handover with nobody waiting.",
     "value": {"command": "handover"}, "expect": {"error": "no_standby"},
     "script": [send("a", "take"), expect("a", subscribed_active()),
                send("a", "handover_alone"), expect("a", error("no_standby"))]},
    {"name": "original_on_v1_connection", "dialect": "v1",
     "description": "An original request on a connection that spoke v1: bad_request.",
     "value": Pairs([("command", {0: None}), ("data", b"hello")]),
     "expect": {"error": "bad_request"},
     "script": [send("a", "add"), expect("a", added(1)), send("a", "original_on_v1_connection"),
                expect("a", error("bad_request"))]},
    {"name": "oversize", "dialect": "v1",
     "description": "A 1025-byte add on a server started with --max-message-bytes 1024.",
     "needs": {"max_message_bytes": 1024},
     "value": exact_add(1025), "expect": {"close": 1009},
     "script": [send("a", "oversize"), closes("a", 1009)]},
    _original_bad("original_unknown_variant", "Variant 9 does not exist: not allowed.",
                  Pairs([("command", {9: None}), ("data", b"")]), 1008),
    _original_bad("original_variant_not_nil", "A variant map's value must be nil: malformed.",
                  Pairs([("command", {0: True}), ("data", b"hello")]), 1007),
    _original_bad("original_data_str", "An original Add's data must be bin: malformed.",
                  Pairs([("command", {0: None}), ("data", "hello")]), 1007),
    _original_bad("original_array_short", "The array form has two elements: malformed.",
                  [{0: None}], 1007),
    {"name": "v1_on_original_connection", "dialect": "original",
     "description": "A v1 request on a connection that spoke original: close 1008.",
     "value": {"command": "add", "data": b"hello"}, "expect": {"close": 1008},
     "script": [send("a", "original_take"), send("a", "v1_on_original_connection"),
                closes("a", 1008)]},
    {"name": "garbage_on_original_connection", "dialect": "original",
     "description": "Undecodable bytes on an original connection: close 1007, never an error.",
     "raw": b"\xc1", "expect": {"close": 1007},
     "script": [send("a", "original_add"), send("a", "garbage_on_original_connection"),
                closes("a", 1007)]},
]  # fmt: skip

# -- events ------------------------------------------------------------------------------------

EVENTS: list[dict[str, Any]] = [
    {"name": "added", "description": "Reply to add, once durable.",
     "value": {"event": "added", "seq": 1, "id": EXAMPLE_ID, "created_at": EXAMPLE_MS},
     "shape": added(T("int"))},
    {"name": "added_duplicate", "description": "Reply to a repeated key: the first's fields.",
     "value": {"event": "added", "seq": 1, "id": EXAMPLE_ID, "created_at": EXAMPLE_MS,
               "duplicate": True},
     "shape": added(T("int"), duplicate=True)},
    {"name": "added_with_req", "description": "Any reply echoes the request's req.",
     "value": {"event": "added", "seq": 1, "id": EXAMPLE_ID, "created_at": EXAMPLE_MS,
               "req": 1},
     "shape": added(T("int"), req=T("req"))},
    {"name": "subscribed_active", "description": "Reply to take: active, with the epoch.",
     "value": {"event": "subscribed", "role": "active", "epoch": 3},
     "shape": subscribed_active()},
    {"name": "subscribed_standby", "description": "Reply to take: standby, no epoch.",
     "value": {"event": "subscribed", "role": "standby"}, "shape": subscribed_standby()},
    {"name": "active", "description": "A standby was promoted; its messages follow.",
     "value": {"event": "active", "epoch": 4}, "shape": {"event": "active", "epoch": T("int")}},
    {"name": "standby", "description": "To the consumer that handed over, once switched.",
     "value": {"event": "standby", "epoch": 5},
     "shape": {"event": "standby", "epoch": T("int")}},
    {"name": "message", "description": "A delivery to the active consumer.",
     "value": {"event": "message", "seq": 1, "id": EXAMPLE_ID, "created_at": EXAMPLE_MS,
               "data": b"hello", "redelivered": False},
     "shape": {"event": "message", "seq": T("int"), "id": T("uuid"), "created_at": T("ms"),
               "data": T("bin"), "redelivered": False}},
    {"name": "message_redelivered", "description": "Delivered again after a failover.",
     "value": {"event": "message", "seq": 1, "id": EXAMPLE_ID, "created_at": EXAMPLE_MS,
               "data": b"hello", "redelivered": True},
     "shape": {"event": "message", "seq": T("int"), "id": T("uuid"), "created_at": T("ms"),
               "data": T("bin"), "redelivered": True}},
    {"name": "error", "description": "A refused request; the connection stays open.",
     "value": {"event": "error", "code": "bad_ack", "message": "seq 9 was never delivered"},
     "shape": error(T("str"))},
    {"name": "error_with_req", "description": "An error about a request with a valid req.",
     "value": {"event": "error", "code": "bad_ack", "message": "seq 9 was never delivered",
               "req": 3},
     "shape": error(T("str"), req=T("req"))},
    {"name": "original_delivery", "dialect": "original",
     "description": "A delivery to an original (0.0.3) consumer: exactly these keys in this "
     "order; id is the UUID's 16 bytes, created_at in seconds.",
     "value": Pairs([("command", {1: None}),
                     ("id", bytes.fromhex(EXAMPLE_ID.replace("-", ""))),
                     ("created_at", EXAMPLE_MS // 1000), ("published", False),
                     ("published_at", 0), ("data", b"hello")]),
     "shape": original_delivery(T("bin"))},
]  # fmt: skip


def _finish(vector: dict[str, Any], kind: str) -> dict[str, Any]:
    """Fill in ``hex`` and ``json`` from ``value`` or ``raw``, in a fixed key order."""
    out: dict[str, Any] = {"name": vector["name"]}
    out["dialect"] = vector.get("dialect", "v1")
    if kind != "events":
        out["frame"] = vector.get("frame", "binary")
    out["description"] = vector["description"]
    if "needs" in vector:
        out["needs"] = vector["needs"]
    if "raw" in vector:
        out["hex"] = vector["raw"].hex()
        out["json"] = None
    else:
        out["hex"] = pack(vector["value"]).hex()
        out["json"] = meaning(vector["value"])
    for key in ("shape", "expect", "script"):
        if key in vector:
            out[key] = vector[key]
    return out


ABOUT = {
    "requests": "Valid requests a client sends, each with a script showing the server's answer.",
    "invalid": "Input the server must refuse, and how: a v1 error code or a close code.",
    "events": "Events the server sends; decode `hex` and compare with `json`. `shape` is what "
    "a live server's event of this kind must look like.",
}


def build() -> dict[str, str]:
    """The three files' text."""
    files = {}
    for kind, vectors in (("requests", REQUESTS), ("invalid", INVALID), ("events", EVENTS)):
        doc = {
            "format": FORMAT,
            "about": ABOUT[kind],
            "notation": "see conformance/README.md (and the docstring of make_vectors.py)",
            "vectors": [_finish(v, kind) for v in vectors],
        }
        files[f"{kind}.json"] = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    return files


def main() -> int:
    for name, text in build().items():
        (HERE / name).write_text(text, encoding="utf-8")
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
