"""The MessagePack envelope: every request shape of both dialects, every refusal, the exact
bytes of every event, and fuzzing that ``decode`` never raises (protocol §3, §4, §8)."""

from __future__ import annotations

import dataclasses
import re
import struct
import uuid
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jackrabbit_core import envelope
from jackrabbit_core.codes import CLOSE_INVALID_PAYLOAD, CLOSE_POLICY_VIOLATION
from jackrabbit_core.envelope import (
    DEFAULT_PREFETCH,
    MAX_KEY_CHARS,
    MAX_PREFETCH,
    MAX_REQ_CHARS,
    Ack,
    Add,
    Dialect,
    Handover,
    Invalid,
    Take,
    decode,
)
from jackrabbit_core.exceptions import InvalidState
from jackrabbit_core.records import StoredMessage

V1 = Dialect.V1
ORIGINAL = Dialect.ORIGINAL
ID = bytes(range(0x10, 0x20))
ID_TEXT = "10111213-1415-1617-1819-1a1b1c1d1e1f"
MESSAGE = StoredMessage(seq=7, id=ID, created_at=1_700_000_123_456, data=b"hello")


def frame(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def refused(obj_or_bytes: object) -> Invalid:
    raw = obj_or_bytes if isinstance(obj_or_bytes, bytes) else frame(obj_or_bytes)
    result = decode(raw)
    assert isinstance(result, Invalid), result
    assert_fits_close_reason(result)
    return result


def assert_fits_close_reason(invalid: Invalid) -> None:
    """A refusal's message can be an original client's close reason as is (protocol §8.4)."""
    assert invalid.message.isascii()
    assert 0 < len(invalid.message) <= 120
    assert invalid.close_code in (CLOSE_INVALID_PAYLOAD, CLOSE_POLICY_VIOLATION)


# -- v1 requests (protocol §3) ------------------------------------------------------------


def test_add() -> None:
    assert decode(frame({"command": "add", "data": b"x"})) == Add(b"x", None, None, V1)


def test_add_with_key_and_req() -> None:
    request = {"command": "add", "data": b"", "key": "order-1", "req": 9}
    assert decode(frame(request)) == Add(b"", "order-1", 9, V1)


def test_add_key_length_bounds() -> None:
    longest = "k" * MAX_KEY_CHARS
    assert decode(frame({"command": "add", "data": b"d", "key": longest})) == Add(
        b"d", longest, None, V1
    )
    # characters, not bytes, are counted
    wide = "é" * MAX_KEY_CHARS
    assert isinstance(decode(frame({"command": "add", "data": b"d", "key": wide})), Add)


@pytest.mark.parametrize("key", ["", "k" * (MAX_KEY_CHARS + 1)])
def test_add_key_out_of_range(key: str) -> None:
    invalid = refused({"command": "add", "data": b"d", "key": key, "req": "r"})
    assert (invalid.code, invalid.req, invalid.dialect) == ("bad_request", "r", V1)
    assert invalid.close_code == CLOSE_POLICY_VIOLATION
    assert "key" in invalid.message


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"command": "add"}, "data"),
        ({"command": "add", "data": "text"}, "data"),
        ({"command": "add", "data": 5}, "data"),
        ({"command": "add", "data": [1, 2]}, "data"),
        ({"command": "add", "data": None}, "data"),
        ({"command": "add", "data": b"d", "key": 5}, "key"),
        ({"command": "add", "data": b"d", "key": b"bin"}, "key"),
        ({"command": "add", "data": b"d", "key": True}, "key"),
        ({"command": "take", "prefetch": "5"}, "prefetch"),
        ({"command": "take", "prefetch": 5.0}, "prefetch"),
        ({"command": "take", "prefetch": True}, "prefetch"),
        ({"command": "ack"}, "seq"),
        ({"command": "ack", "seq": "3"}, "seq"),
        ({"command": "ack", "seq": 3.0}, "seq"),
        ({"command": "ack", "seq": True}, "seq"),
        ({"command": "ack", "seq": None}, "seq"),
        ({"data": b"d"}, "command"),
        ({}, "command"),
        ({"command": 1, "data": b"d"}, "command"),
        ({"command": None}, "command"),
        ({"command": b"add", "data": b"d"}, "command"),
        ({"command": ["add"]}, "command"),
    ],
)
def test_wrong_typed_or_missing_field_is_bad_request(request_: dict[str, Any], field: str) -> None:
    invalid = refused({**request_, "req": 41})
    assert invalid.code == "bad_request"
    assert invalid.req == 41  # echoed (protocol §3.5)
    assert invalid.dialect is V1
    assert invalid.close_code == CLOSE_INVALID_PAYLOAD
    assert field in invalid.message


def test_take_default_prefetch() -> None:
    assert decode(frame({"command": "take"})) == Take(DEFAULT_PREFETCH, None, V1)
    assert decode(frame({"command": "take", "prefetch": None})) == Take(DEFAULT_PREFETCH, None, V1)
    assert DEFAULT_PREFETCH == 1000


@pytest.mark.parametrize("prefetch", [1, 2, MAX_PREFETCH])
def test_take_prefetch(prefetch: int) -> None:
    assert decode(frame({"command": "take", "prefetch": prefetch, "req": "t"})) == Take(
        prefetch, "t", V1
    )


@pytest.mark.parametrize("prefetch", [0, -1, MAX_PREFETCH + 1, 2**64 - 1, -(2**63)])
def test_take_prefetch_out_of_range(prefetch: int) -> None:
    invalid = refused({"command": "take", "prefetch": prefetch, "req": 3})
    assert (invalid.code, invalid.req, invalid.dialect) == ("bad_request", 3, V1)
    assert invalid.close_code == CLOSE_POLICY_VIOLATION
    assert "prefetch" in invalid.message


@pytest.mark.parametrize("seq", [1, 2, 2**63 - 1, 2**64 - 1])
def test_ack(seq: int) -> None:
    assert decode(frame({"command": "ack", "seq": seq, "req": 5})) == Ack(seq, 5)


@pytest.mark.parametrize("seq", [0, -1, -(2**63)])
def test_ack_below_one_is_bad_ack(seq: int) -> None:
    invalid = refused({"command": "ack", "seq": seq, "req": "a"})
    assert (invalid.code, invalid.req, invalid.dialect) == ("bad_ack", "a", V1)
    assert invalid.close_code == CLOSE_POLICY_VIOLATION


def test_handover() -> None:
    assert decode(frame({"command": "handover"})) == Handover(None)
    assert decode(frame({"command": "handover", "req": 0})) == Handover(0)


@pytest.mark.parametrize(
    "command",
    ["nope", "ADD", "", "Take", "x" * 5000, "émoji 🐇" * 30],
    ids=["nope", "ADD", "empty", "Take", "long", "unicode"],
)
def test_unknown_command(command: str) -> None:
    invalid = refused({"command": command, "req": 12})
    assert (invalid.code, invalid.req, invalid.dialect) == ("unknown_command", 12, V1)
    assert invalid.close_code == CLOSE_POLICY_VIOLATION


def test_unknown_command_message_names_it() -> None:
    assert "'fly'" in refused({"command": "fly"}).message


# -- req echo and unknown keys (protocol §3.5) --------------------------------------------


@pytest.mark.parametrize(
    "req", [0, -1, 1, 2**63 - 1, 2**64 - 1, -(2**63), "", "r", "é", "x" * MAX_REQ_CHARS]
)
def test_valid_req_is_carried_on_every_command(req: int | str) -> None:
    assert decode(frame({"command": "add", "data": b"", "req": req})) == Add(b"", None, req, V1)
    assert decode(frame({"command": "take", "req": req})) == Take(DEFAULT_PREFETCH, req, V1)
    assert decode(frame({"command": "ack", "seq": 1, "req": req})) == Ack(1, req)
    assert decode(frame({"command": "handover", "req": req})) == Handover(req)
    assert refused({"command": "what", "req": req}).req == req


@pytest.mark.parametrize(
    ("req", "close_code"),
    [
        (True, CLOSE_INVALID_PAYLOAD),
        (False, CLOSE_INVALID_PAYLOAD),
        (1.5, CLOSE_INVALID_PAYLOAD),
        (b"bin", CLOSE_INVALID_PAYLOAD),
        ([1], CLOSE_INVALID_PAYLOAD),
        ({"a": 1}, CLOSE_INVALID_PAYLOAD),
        ("x" * (MAX_REQ_CHARS + 1), CLOSE_POLICY_VIOLATION),
    ],
)
def test_invalid_req_is_bad_request_and_not_echoed(req: object, close_code: int) -> None:
    for request in (
        {"command": "add", "data": b"d", "req": req},
        {"command": "take", "req": req},
        {"command": "ack", "seq": 1, "req": req},
        {"command": "handover", "req": req},
        {"command": "unknown", "req": req},
        {"no": "command", "req": req},
    ):
        invalid = refused(request)
        assert (invalid.code, invalid.req, invalid.dialect) == ("bad_request", None, V1)
        assert invalid.close_code == close_code
        assert "req" in invalid.message


def test_invalid_req_is_reported_before_other_fields() -> None:
    invalid = refused({"command": "add", "req": 1.5})  # data missing too
    assert "req" in invalid.message


def test_unknown_keys_are_ignored() -> None:
    extra = {"future": [1, {"x": None}], "priority": 3, 7: "int key", "ttl": msgpack.Timestamp(1)}
    assert decode(frame({"command": "add", "data": b"d", **extra})) == Add(b"d", None, None, V1)
    assert decode(frame({"command": "take", **extra})) == Take(DEFAULT_PREFETCH, None, V1)
    assert decode(frame({"command": "ack", "seq": 4, **extra})) == Ack(4, None)
    assert decode(frame({**extra, "command": "handover"})) == Handover(None)


def test_nil_optional_fields_count_as_absent() -> None:
    request = {"command": "add", "data": b"d", "key": None, "req": None}
    assert decode(frame(request)) == Add(b"d", None, None, V1)


def test_str8_and_str32_keys_decode_like_fixstr() -> None:
    # Other-language encoders may pick any string width; the result must not depend on it.
    def str8(text: str) -> bytes:
        return b"\xd9" + bytes([len(text)]) + text.encode()

    raw = b"\x82" + str8("command") + b"\xdb\x00\x00\x00\x03add" + str8("data") + b"\xc4\x01z"
    assert decode(raw) == Add(b"z", None, None, V1)


# -- the original 0.0.3 requests (protocol §8.1) ------------------------------------------


def test_original_add_map_form() -> None:
    assert decode(frame({"command": {0: None}, "data": b"payload"})) == Add(
        b"payload", None, None, ORIGINAL
    )


def test_original_take_map_form() -> None:
    expected = Take(DEFAULT_PREFETCH, None, ORIGINAL)
    assert decode(frame({"command": {1: None}, "data": b""})) == expected
    assert decode(frame({"command": {1: None}, "data": b"ignored"})) == expected
    assert decode(frame({"command": {1: None}})) == expected
    assert decode(frame({"command": {1: None}, "data": [1, 2]})) == expected


def test_original_array_form() -> None:
    assert decode(frame([{0: None}, b"payload"])) == Add(b"payload", None, None, ORIGINAL)
    assert decode(frame([{1: None}, b""])) == Take(DEFAULT_PREFETCH, None, ORIGINAL)


def test_original_exact_rmp_serde_bytes() -> None:
    # What rmp_serde::to_vec_named and to_vec write for Add with data b"hi", byte for byte.
    named = b"\x82\xa7command\x81\x00\xc0\xa4data\xc4\x02hi"
    plain = b"\x92\x81\x00\xc0\xc4\x02hi"
    assert decode(named) == Add(b"hi", None, None, ORIGINAL)
    assert decode(plain) == Add(b"hi", None, None, ORIGINAL)


def test_original_ignores_unknown_keys_and_req() -> None:
    request = {"command": {0: None}, "data": b"d", "req": 5, "extra": 1}
    assert decode(frame(request)) == Add(b"d", None, None, ORIGINAL)


@pytest.mark.parametrize("index", [2, 3, -1, 255, 2**64 - 1])
def test_original_unknown_variant_closes_1008(index: int) -> None:
    for request in ({"command": {index: None}, "data": b""}, [{index: None}, b""]):
        invalid = refused(request)
        assert invalid.code == "unknown_command"
        assert (invalid.req, invalid.dialect) == (None, ORIGINAL)
        assert invalid.close_code == CLOSE_POLICY_VIOLATION
        assert str(index) in invalid.message


@pytest.mark.parametrize(
    "request_",
    [
        {"command": {0: None}},  # Add without data
        {"command": {0: None}, "data": "text"},
        {"command": {0: None}, "data": [104, 105]},
        {"command": {0: None}, "data": None},
        {"command": {}, "data": b""},
        {"command": {0: None, 1: None}, "data": b""},
        {"command": {0: 1}, "data": b""},
        {"command": {0: []}, "data": b""},
        {"command": {"0": None}, "data": b""},
        {"command": {"Add": None}, "data": b""},
        {"command": {True: None}, "data": b""},
        {"command": {0.0: None}, "data": b""},
        [{0: None}],
        [{0: None}, b"d", b"extra"],
        [{0: None}, "text"],
        [],
        [0, b"d"],
        ["add", b"d"],
        [[0], b"d"],
        [None, b"d"],
    ],
)
def test_original_wrong_shape_closes_1007(request_: object) -> None:
    invalid = refused(request_)
    assert (invalid.code, invalid.req, invalid.dialect) == ("bad_request", None, ORIGINAL)
    assert invalid.close_code == CLOSE_INVALID_PAYLOAD


# -- frames that are no request at all (protocol §2.1) ------------------------------------


def deep(opener: bytes, depth: int, leaf: bytes = b"\xc0") -> bytes:
    return opener * depth + leaf


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="reserved-byte"),
        pytest.param(b"\x82\xa7command\xa3add", id="truncated-map"),
        pytest.param(b"\xc4\x05ab", id="truncated-bin"),
        pytest.param(frame({"command": "take"}) + b"\xc0", id="trailing-byte"),
        pytest.param(frame({"command": "take"}) * 2, id="two-objects"),
        pytest.param(b"\x81\xa7command\xa3a\xffd", id="invalid-utf8-value"),
        pytest.param(b"\x81\xa3\xed\xa0\x80\xa4take", id="invalid-utf8-key-surrogate"),
        pytest.param(b"\x82\xa7command\xa3add\xa4data\xd4\x05\x00", id="ext-type-as-data"),
        pytest.param(
            b"\x83\xa7command\xa4take\xa1x\xc7\x03\x10abc\xc0\xc0", id="ext-type-anywhere"
        ),
        pytest.param(b"\xd5\xff\x00\x00", id="bad-timestamp-length"),
        pytest.param(deep(b"\x91", 100_000), id="100k-deep-array"),
        pytest.param(deep(b"\x81\xc0", 100_000), id="100k-deep-map-values"),
        pytest.param(deep(b"\x81", 100_000), id="100k-deep-map-keys"),
        pytest.param(b"\x81\xa7command" + deep(b"\x91", 2000), id="deep-in-command"),
        pytest.param(b"\xdd\xff\xff\xff\xff", id="array32-4G-declared"),
        pytest.param(b"\xdf\xff\xff\xff\xff", id="map32-4G-declared"),
        pytest.param(b"\xc6\xff\xff\xff\xff", id="bin32-4G-declared"),
        pytest.param(b"\xdb\xff\xff\xff\xff", id="str32-4G-declared"),
        pytest.param(b"\xc9\xff\xff\xff\xff\x05", id="ext32-4G-declared"),
        pytest.param(b"\x81\x81\x01\x02\xc0", id="map-as-map-key"),
        pytest.param(b"\x81\x91\x81\x01\x02\xc0", id="map-inside-array-key"),
    ],
)
def test_undecodable_frames(raw: bytes) -> None:
    invalid = refused(raw)
    assert (invalid.code, invalid.req, invalid.dialect) == ("bad_request", None, None)
    assert invalid.close_code == CLOSE_INVALID_PAYLOAD


def test_array_as_map_key_is_fine() -> None:
    # arrays decode as tuples and hash; as an unknown key it is just ignored (protocol §3.5)
    raw = b"\x83\xa7command\xa4take\x91\x01\xc0\xa3req\x07"
    assert decode(raw) == Take(DEFAULT_PREFETCH, 7, V1)


@pytest.mark.parametrize(
    "obj", [None, True, 0, -5, 1.5, "add", b"add", msgpack.Timestamp(5), msgpack.ExtType(5, b"x")]
)
def test_not_a_map_or_array(obj: object) -> None:
    invalid = refused(obj)
    assert (invalid.code, invalid.req, invalid.dialect) == ("bad_request", None, None)
    assert invalid.close_code == CLOSE_INVALID_PAYLOAD


def test_timestamp_is_an_ordinary_wrong_typed_value() -> None:
    invalid = refused({"command": "add", "data": msgpack.Timestamp(1)})
    assert (invalid.dialect, "data" in invalid.message) == (V1, True)


def test_the_last_defence_turns_a_bug_into_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(frame: bytes) -> envelope.Command:
        raise KeyError("a bug")

    monkeypatch.setattr(envelope, "_decode", broken)
    invalid = refused(frame({"command": "take"}))
    assert (invalid.code, invalid.dialect) == ("bad_request", None)
    assert "KeyError" in invalid.message


def test_commands_are_frozen_and_slotted() -> None:
    add = Add(b"x", None, None, V1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        add.data = b"y"  # type: ignore[misc]
    commands: list[object] = [
        add,
        Take(1, None, V1),
        Ack(1, None),
        Handover(None),
        Invalid("bad_request", "m", None, None, CLOSE_INVALID_PAYLOAD),
    ]
    for command in commands:
        assert not hasattr(command, "__dict__")


# -- fuzzing: decode never raises ---------------------------------------------------------

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.builds(msgpack.Timestamp, st.integers(0, 2**32 - 1))
)
keys = (
    st.sampled_from(["command", "data", "key", "req", "prefetch", "seq"])
    | st.text(max_size=6)
    | st.integers(-3, 3)
)
command_values = st.sampled_from(
    ["add", "take", "ack", "handover", "other", {0: None}, {1: None}, {2: None}, {0: 1}]
)
values = st.recursive(
    scalars | command_values,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=12,
)
requests = st.dictionaries(keys, values, max_size=6) | st.lists(values, max_size=3) | values


def check(result: object) -> None:
    assert isinstance(result, Add | Take | Ack | Handover | Invalid)
    if isinstance(result, Invalid):
        assert_fits_close_reason(result)
        assert result.code in ("bad_request", "unknown_command", "bad_ack")
    if isinstance(result, Add):
        assert isinstance(result.data, bytes)
    if isinstance(result, Take):
        assert 1 <= result.prefetch <= MAX_PREFETCH
    if isinstance(result, Ack):
        assert result.seq >= 1


@SETTINGS
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    check(envelope._decode(raw))  # the inner function: no help from the last defence
    check(decode(raw))


@settings(SETTINGS, max_examples=120)
@given(requests)
def test_fuzz_arbitrary_msgpack_objects(obj: object) -> None:
    raw = frame(obj)
    check(envelope._decode(raw))


VALID_FRAMES = [
    frame({"command": "add", "data": b"payload", "key": "k", "req": 1}),
    frame({"command": "take", "prefetch": 10, "req": "r"}),
    frame({"command": "ack", "seq": 300}),
    frame({"command": "handover"}),
    frame({"command": {0: None}, "data": b"payload"}),
    frame({"command": {1: None}, "data": b""}),
    frame([{0: None}, b"payload"]),
]


@SETTINGS
@given(st.sampled_from(VALID_FRAMES), st.data())
def test_fuzz_corrupted_valid_frames(valid: bytes, data: st.DataObject) -> None:
    raw = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, len(raw)))
        if action == "flip" and at < len(raw):
            raw[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del raw[at:]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=5))
    check(envelope._decode(bytes(raw)))


@SETTINGS
@given(
    st.binary(max_size=100),
    st.none() | st.text(min_size=1, max_size=MAX_KEY_CHARS),
    st.none() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=MAX_REQ_CHARS),
)
def test_every_valid_add_decodes_exactly(
    data: bytes, key: str | None, req: int | str | None
) -> None:
    request: dict[str, object] = {"command": "add", "data": data}
    if key is not None:
        request["key"] = key
    if req is not None:
        request["req"] = req
    assert decode(frame(request)) == Add(data, key, req, V1)


# -- events (protocol §4) ------------------------------------------------------------------


def test_added() -> None:
    event = unpack(envelope.added(3, ID, 1_700_000_000_001))
    assert event == {"event": "added", "seq": 3, "id": ID_TEXT, "created_at": 1_700_000_000_001}


def test_added_duplicate_and_req() -> None:
    event = unpack(envelope.added(3, ID, 5, duplicate=True, req="r1"))
    assert event == {
        "event": "added",
        "seq": 3,
        "id": ID_TEXT,
        "created_at": 5,
        "duplicate": True,
        "req": "r1",
    }
    assert "duplicate" not in unpack(envelope.added(3, ID, 5, duplicate=False))


@pytest.mark.parametrize("req", [0, "", -1, "x", 2**64 - 1])
def test_falsy_and_extreme_req_is_still_echoed(req: int | str) -> None:
    assert unpack(envelope.added(1, ID, 1, req=req))["req"] == req
    assert unpack(envelope.subscribed("standby", None, req))["req"] == req
    assert unpack(envelope.error("bad_request", "m", req))["req"] == req


def test_no_req_key_without_req() -> None:
    for payload in (
        envelope.added(1, ID, 1),
        envelope.subscribed("active", 1),
        envelope.error("not_active", "m"),
    ):
        assert "req" not in unpack(payload)


def test_subscribed() -> None:
    assert unpack(envelope.subscribed("active", 4, 2)) == {
        "event": "subscribed",
        "role": "active",
        "epoch": 4,
        "req": 2,
    }
    assert unpack(envelope.subscribed("active", 0)) == {
        "event": "subscribed",
        "role": "active",
        "epoch": 0,
    }
    assert unpack(envelope.subscribed("standby", None)) == {
        "event": "subscribed",
        "role": "standby",
    }


def test_active_and_standby() -> None:
    assert unpack(envelope.active(9)) == {"event": "active", "epoch": 9}
    assert unpack(envelope.standby(10)) == {"event": "standby", "epoch": 10}


@pytest.mark.parametrize("redelivered", [False, True])
def test_message(redelivered: bool) -> None:
    event = unpack(envelope.message(MESSAGE, redelivered))
    assert event == {
        "event": "message",
        "seq": 7,
        "id": ID_TEXT,
        "created_at": 1_700_000_123_456,
        "data": b"hello",
        "redelivered": redelivered,
    }
    assert type(event["data"]) is bytes  # bin, not str
    assert type(event["redelivered"]) is bool


def test_error() -> None:
    assert unpack(envelope.error("no_standby", "nobody waits", 1)) == {
        "event": "error",
        "code": "no_standby",
        "message": "nobody waits",
        "req": 1,
    }


def test_event_key_order_starts_with_event() -> None:
    for payload in (
        envelope.added(1, ID, 1, duplicate=True, req=1),
        envelope.subscribed("active", 1, 1),
        envelope.active(1),
        envelope.standby(1),
        envelope.message(MESSAGE, False),
        envelope.error("bad_request", "m", 1),
    ):
        pairs = msgpack.unpackb(payload, object_pairs_hook=list)
        assert pairs[0][0] == "event"


def test_events_use_only_string_keys_and_bin_data() -> None:
    # A v1 client in any language reads str keys; data arrives as bin (protocol §4).
    payload = envelope.message(StoredMessage(1, ID, 1, b"\xff\xfe"), False)
    assert b"\xc4\x02\xff\xfe" in payload
    assert all(type(k) is str for k in unpack(payload))


def test_a_v1_event_is_never_read_as_a_request() -> None:
    for payload in (envelope.active(1), envelope.message(MESSAGE, True)):
        assert isinstance(decode(payload), Invalid)


# -- the original delivery (protocol §8.2) ------------------------------------------------


def original_delivery(id_: bytes, created_s: int, data: bytes) -> bytes:
    """CONTRACT §3 spelled out by hand: exactly these keys, in this order."""
    return b"".join(
        [
            b"\x86",
            b"\xa7command", b"\x81\x01\xc0",
            b"\xa2id", b"\xc4\x10", id_,
            b"\xaacreated_at", b"\xce" + struct.pack(">I", created_s),
            b"\xa9published", b"\xc2",
            b"\xacpublished_at", b"\x00",
            b"\xa4data", b"\xc4" + bytes([len(data)]), data,
        ]
    )  # fmt: skip


def test_original_message_exact_bytes() -> None:
    assert envelope.original_message(MESSAGE) == original_delivery(ID, 1_700_000_123, b"hello")


def test_original_message_created_at_floors_to_seconds() -> None:
    for ms, seconds in [(1_700_000_000_999, 1_700_000_000), (1_700_000_001_000, 1_700_000_001)]:
        m = StoredMessage(1, ID, ms, b"")
        assert unpack(envelope.original_message(m))["created_at"] == seconds


def test_original_message_key_order_and_types() -> None:
    pairs = msgpack.unpackb(
        envelope.original_message(MESSAGE), object_pairs_hook=list, strict_map_key=False
    )
    assert [k for k, _ in pairs] == [
        "command",
        "id",
        "created_at",
        "published",
        "published_at",
        "data",
    ]
    values = dict(pairs)
    assert values["command"] == [(1, None)]
    assert values["id"] == ID and values["data"] == b"hello"
    assert values["published"] is False and values["published_at"] == 0


def test_original_message_large_data() -> None:
    data = bytes(70_000)
    decoded = unpack(envelope.original_message(StoredMessage(1, ID, 0, data)))
    assert decoded["data"] == data


def test_original_message_refuses_a_wrong_id() -> None:
    with pytest.raises(InvalidState):
        envelope.original_message(StoredMessage(1, b"short", 0, b""))


# -- format_id ------------------------------------------------------------------------------


def test_format_id() -> None:
    assert envelope.format_id(ID) == ID_TEXT
    assert envelope.format_id(bytes(16)) == "00000000-0000-0000-0000-000000000000"
    assert envelope.format_id(b"\xff" * 16) == "ffffffff-ffff-ffff-ffff-ffffffffffff"


@SETTINGS
@given(st.binary(min_size=16, max_size=16))
def test_format_id_matches_uuid(raw: bytes) -> None:
    assert envelope.format_id(raw) == str(uuid.UUID(bytes=raw))


@pytest.mark.parametrize("raw", [b"", bytes(15), bytes(17)])
def test_format_id_refuses_a_wrong_length(raw: bytes) -> None:
    with pytest.raises(InvalidState):
        envelope.format_id(raw)


# -- the hex examples of docs/protocol.md ----------------------------------------------------

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def documented_examples() -> list[bytes]:
    blocks = re.findall(r"```hex\n(.*?)```", PROTOCOL_MD.read_text(), flags=re.S)
    return [bytes.fromhex(block) for block in blocks]


def reencode(obj: dict[Any, Any]) -> bytes:
    """The bytes our encoder makes for the event ``obj`` describes."""
    if "published" in obj:  # an original delivery (protocol §8.2)
        m = StoredMessage(1, obj["id"], obj["created_at"] * 1000, obj["data"])
        return envelope.original_message(m)
    kind, req = obj["event"], obj.get("req")
    if kind == "added":
        id_ = uuid.UUID(obj["id"]).bytes
        duplicate = obj.get("duplicate", False)
        return envelope.added(obj["seq"], id_, obj["created_at"], duplicate=duplicate, req=req)
    if kind == "subscribed":
        return envelope.subscribed(obj["role"], obj.get("epoch"), req)
    if kind == "active":
        return envelope.active(obj["epoch"])
    if kind == "standby":
        return envelope.standby(obj["epoch"])
    if kind == "message":
        m = StoredMessage(obj["seq"], uuid.UUID(obj["id"]).bytes, obj["created_at"], obj["data"])
        return envelope.message(m, obj["redelivered"])
    assert kind == "error"
    return envelope.error(obj["code"], obj["message"], req)


def test_protocol_document_examples_are_exact() -> None:
    examples = documented_examples()
    assert len(examples) >= 15
    for raw in examples:
        obj = unpack(raw)  # exactly one object, or this raises
        if isinstance(obj, dict) and ("event" in obj or "published" in obj):
            assert reencode(obj) == raw
        else:  # a request: it decodes, and it is what msgpack writes for it
            assert not isinstance(decode(raw), Invalid), obj
            assert frame(obj) == raw
