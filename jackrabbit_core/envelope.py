"""Client frames in, server events out: the MessagePack envelope of both dialects, no I/O.

Each binary WebSocket message holds one MessagePack object (protocol §2.1). ``decode`` turns
it into one typed command; the ``added`` … ``original_message`` functions build the bytes of
each server event (protocol §4, §8.2)::

    frame ──decode()──▶ Add | Take | Ack | Handover      a request to carry out
                        Invalid                          a refused frame: the caller answers
                                                         ``error(invalid.code, invalid.message,
                                                         invalid.req)`` to a v1 client, or
                                                         closes an original one with
                                                         ``invalid.close_code`` (protocol §8.4)

Which dialect a frame speaks is read from its shape (protocol §3, §8.1):

- a map whose ``"command"`` is a str is **v1**;
- a map whose ``"command"`` is a map, or an array, is the **original** 0.0.3 format;
- any other map is a v1 request that lacks its command; anything else cannot be told apart.

``decode`` never raises, whatever the bytes: what a peer sends wrong is an ``Invalid``, the way
websockets and h11 turn a peer's mistakes into data (``exceptions.py``). The encoders trust
their arguments, which come from the core, not from a peer.

Thread safety: the encoders share one ``msgpack.Packer`` (half the cost of ``packb``). The core
is driven by one thread at a time (``server.py``), so they must not be called concurrently
from threads that bypass it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgpack

from .codes import (
    BAD_ACK,
    BAD_REQUEST,
    CLOSE_INVALID_PAYLOAD,
    CLOSE_POLICY_VIOLATION,
    UNKNOWN_COMMAND,
    ErrorCode,
)
from .exceptions import InvalidState
from .records import Req, StoredMessage

__all__ = [
    "DEFAULT_PREFETCH",
    "MAX_KEY_CHARS",
    "MAX_PREFETCH",
    "MAX_REQ_CHARS",
    "Ack",
    "Add",
    "Command",
    "Dialect",
    "Handover",
    "Invalid",
    "Take",
    "active",
    "added",
    "decode",
    "error",
    "format_id",
    "message",
    "original_message",
    "standby",
    "subscribed",
]

#: ``prefetch`` of a ``take`` that names none, and of every original Take (protocol §3.2, §8.1).
DEFAULT_PREFETCH: Final = 1000
#: The largest ``prefetch`` a ``take`` may ask for (protocol §3.2).
MAX_PREFETCH: Final = 100_000
#: An idempotency ``key`` is 1 to this many characters (protocol §3.1).
MAX_KEY_CHARS: Final = 1024
#: A str ``req`` is at most this many characters (protocol §3.5).
MAX_REQ_CHARS: Final = 256


class Dialect(enum.Enum):
    """The two wire formats a client may speak; a connection keeps its first (protocol §8.4)."""

    V1 = "v1"
    ORIGINAL = "original"


# -- commands (protocol §3, §8.1) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Add:
    """Append ``data`` to the connection's queue (protocol §3.1, original Add §8.1)."""

    data: bytes
    #: The idempotency key (protocol §6.8); always ``None`` from an original client.
    key: str | None
    req: Req
    dialect: Dialect


@dataclass(frozen=True, slots=True)
class Take:
    """Join the queue's consumer line (protocol §3.2, §6.2; original Take §8.1)."""

    #: Most unacknowledged deliveries in flight, 1..``MAX_PREFETCH`` (protocol §6.3).
    prefetch: int
    req: Req
    dialect: Dialect


@dataclass(frozen=True, slots=True)
class Ack:
    """Acknowledge every delivery up to and including ``seq`` (v1 only, protocol §3.3)."""

    seq: int
    req: Req


@dataclass(frozen=True, slots=True)
class Handover:
    """The active consumer asks to hand over to the next standby (v1 only, protocol §3.4)."""

    req: Req


@dataclass(frozen=True, slots=True)
class Invalid:
    """A refused frame, with what to answer for each dialect (protocol §5, §8.4).

    A v1 client gets ``error(code, message, req)`` and the connection stays open. An original
    client is closed with ``close_code`` and ``message`` as the reason: ``1007`` when the frame
    is not a well-formed request at all, ``1008`` when it is well formed but a value is refused
    (protocol §2.4). ``message`` is ASCII and at most 120 characters, so it fits a close reason.
    """

    code: ErrorCode
    message: str
    #: The request's ``req`` when it had a valid one, so the error can name it (protocol §3.5).
    req: Req
    #: ``None`` when the frame's dialect could not even be told (not a map or an array).
    dialect: Dialect | None
    close_code: int


Command = Add | Take | Ack | Handover | Invalid


# -- decoding -----------------------------------------------------------------------------


def _malformed(message: str, req: Req = None, dialect: Dialect | None = None) -> Invalid:
    """Not the shape of any request: a missing or wrong-typed field, not MessagePack (§2.4)."""
    return Invalid(BAD_REQUEST, message, req, dialect, CLOSE_INVALID_PAYLOAD)


def _refused(code: ErrorCode, message: str, req: Req, dialect: Dialect) -> Invalid:
    """Well formed, but a value is not allowed: unknown command, out of range (§2.4)."""
    return Invalid(code, message, req, dialect, CLOSE_POLICY_VIOLATION)


class _ExtRefused(ValueError):
    """Raised from inside the unpacker when a frame holds an application extension type."""


def _refuse_ext(code: int, data: bytes) -> Any:
    # protocol §2.1: no request uses extension types. The standard timestamp (-1) is decoded
    # by msgpack itself; it is then only a value of the wrong type wherever a field is read.
    raise _ExtRefused(f"MessagePack extension type {code} is not allowed")


_unpackb: Final[Callable[..., object]] = msgpack.unpackb
_V1: Final = Dialect.V1
_ORIGINAL: Final = Dialect.ORIGINAL
_MISSING: Final[Any] = object()


def decode(frame: bytes) -> Command:
    """Read one client frame (protocol §3, §8.1). Never raises: bad input is an ``Invalid``.

    The caller carries out the command it gets back, or answers an ``Invalid`` as its
    docstring says (protocol §5, §8.4).
    """
    try:
        return _decode(frame)
    except Exception as exc:
        # Last defence only. Everything msgpack or a peer can cause is caught precisely in
        # ``_decode``, and the tests fuzz ``_decode`` itself so that a bug there still shows;
        # this keeps a bug from turning one odd frame into a dead connection or server.
        return _malformed(f"unreadable request ({type(exc).__name__})")


def _decode(frame: bytes) -> Command:
    try:
        # protocol §2.1. ``unpackb`` bounds every declared length by the frame's own size, and
        # its C unpacker refuses nesting past 1024 levels without recursing.
        obj = _unpackb(frame, raw=False, strict_map_key=False, use_list=False, ext_hook=_refuse_ext)
    except _ExtRefused as exc:
        return _malformed(str(exc))
    except UnicodeDecodeError:
        return _malformed("a string is not valid UTF-8")
    except msgpack.ExtraData:
        return _malformed("a frame holds exactly one MessagePack object")
    except msgpack.StackError:
        return _malformed("MessagePack nested too deeply")
    except (ValueError, RecursionError):
        # FormatError, truncated input, a declared length past the end, a bad timestamp;
        # RecursionError only from msgpack's pure-Python fallback, on deep nesting.
        return _malformed("not valid MessagePack")
    except TypeError:
        # A map used as a map key is unhashable (arrays come back as tuples, which hash).
        return _malformed("a map key is a map")
    if type(obj) is dict:
        command = obj.get("command", _MISSING)
        if type(command) is str:
            return _v1(obj, command)
        if type(command) is dict:
            return _original(command, obj.get("data", _MISSING))
        req = obj.get("req")
        if not _valid_req(req):
            return _invalid_req(req)
        if command is _MISSING:
            return _malformed('a request needs "command"', req, _V1)
        return _malformed('"command" must be a str', req, _V1)
    if type(obj) is tuple:  # the original array form, protocol §8.1
        if len(obj) != 2 or type(obj[0]) is not dict:
            return _malformed("an original array request is [{index: nil}, data]", None, _ORIGINAL)
        return _original(obj[0], obj[1])
    return _malformed("a request is a MessagePack map")


def _valid_req(req: object) -> bool:
    """``req`` is absent (nil), an int or a str of at most 256 characters (protocol §3.5)."""
    return req is None or type(req) is int or (type(req) is str and len(req) <= MAX_REQ_CHARS)


def _invalid_req(req: object) -> Invalid:
    # protocol §3.5: an invalid ``req`` is not echoed.
    if type(req) is str:
        message = f'"req" must be at most {MAX_REQ_CHARS} characters'
        return _refused(BAD_REQUEST, message, None, _V1)
    return _malformed('"req" must be an int or a str', None, _V1)


def _v1(obj: dict[Any, Any], command: str) -> Command:
    """A v1 request (protocol §3). ``nil`` stands for an absent optional field (§3.5)."""
    req = obj.get("req")
    if not (req is None or type(req) is int or _valid_req(req)):
        return _invalid_req(req)
    if command == "add":  # protocol §3.1
        data = obj.get("data")
        if type(data) is not bytes:
            return _malformed('add needs "data" as MessagePack bin', req, _V1)
        key = obj.get("key")
        if key is not None:
            if type(key) is not str:
                return _malformed('"key" must be a str', req, _V1)
            if not 0 < len(key) <= MAX_KEY_CHARS:
                message = f'"key" must be 1 to {MAX_KEY_CHARS} characters'
                return _refused(BAD_REQUEST, message, req, _V1)
        return Add(data, key, req, _V1)
    if command == "take":  # protocol §3.2
        prefetch = obj.get("prefetch")
        if prefetch is None:
            return Take(DEFAULT_PREFETCH, req, _V1)
        if type(prefetch) is not int:
            return _malformed('"prefetch" must be an int', req, _V1)
        if not 0 < prefetch <= MAX_PREFETCH:
            return _refused(BAD_REQUEST, f'"prefetch" must be 1 to {MAX_PREFETCH}', req, _V1)
        return Take(prefetch, req, _V1)
    if command == "ack":  # protocol §3.3
        seq = obj.get("seq")
        if type(seq) is not int:
            return _malformed('ack needs "seq" as an int', req, _V1)
        if seq < 1:
            return _refused(BAD_ACK, '"seq" must be at least 1', req, _V1)
        return Ack(seq, req)
    if command == "handover":  # protocol §3.4
        return Handover(req)
    return _refused(UNKNOWN_COMMAND, f"unknown command {ascii(command[:40])[:80]}", req, _V1)


def _original(variant: dict[Any, Any], data: object) -> Command:
    """An original 0.0.3 request (protocol §8.1): ``variant`` should be rmp_serde's
    ``{index: nil}``; ``data`` is the request's data, or ``_MISSING``. A Take ignores it.
    """
    if len(variant) != 1:
        return _malformed("an original command is one {index: nil} entry", None, _ORIGINAL)
    ((index, value),) = variant.items()
    if type(index) is not int or value is not None:
        return _malformed("an original command is one {index: nil} entry", None, _ORIGINAL)
    if index == 0:
        if type(data) is not bytes:
            return _malformed('an original Add needs "data" as MessagePack bin', None, _ORIGINAL)
        return Add(data, None, None, _ORIGINAL)
    if index == 1:
        return Take(DEFAULT_PREFETCH, None, _ORIGINAL)
    return _refused(UNKNOWN_COMMAND, f"unknown original command {index}", None, _ORIGINAL)


# -- encoding (protocol §4, §8.2) ----------------------------------------------------------

_pack: Final[Callable[[object], bytes]] = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def format_id(id: bytes) -> str:
    """A message id's 16 bytes as canonical lowercase UUID text (protocol §4.1, §4.5).

    About five times faster than ``str(uuid.UUID(bytes=id))`` (and the core may not import
    ``uuid``): hex in 2-byte groups, then keep the dashes a UUID has.
    """
    if len(id) != 16:
        raise InvalidState(f"a message id is 16 bytes, not {len(id)}")
    h = id.hex("-", 2)  # 0011-2233-4455-6677-8899-aabb-ccdd-eeff
    return f"{h[:4]}{h[5:29]}{h[30:34]}{h[35:]}"


def added(
    seq: int, id: bytes, created_at: int, *, duplicate: bool = False, req: Req = None
) -> bytes:
    """The ``added`` event: an add is durable, or was a duplicate (protocol §4.1, §6.8)."""
    event: dict[str, object] = {
        "event": "added",
        "seq": seq,
        "id": format_id(id),
        "created_at": created_at,
    }
    if duplicate:
        event["duplicate"] = True
    if req is not None:
        event["req"] = req
    return _pack(event)


def subscribed(role: Literal["active", "standby"], epoch: int | None, req: Req = None) -> bytes:
    """The reply to a ``take``; ``epoch`` when ``role`` is active (protocol §4.2, §6.7)."""
    event: dict[str, object] = {"event": "subscribed", "role": role}
    if epoch is not None:
        event["epoch"] = epoch
    if req is not None:
        event["req"] = req
    return _pack(event)


def active(epoch: int) -> bytes:
    """A standby was promoted; its deliveries follow (protocol §4.3, §6.5)."""
    return _pack({"event": "active", "epoch": epoch})


def standby(epoch: int) -> bytes:
    """A planned handover is done; the sender is now the last standby (protocol §4.4, §6.6)."""
    return _pack({"event": "standby", "epoch": epoch})


def message(m: StoredMessage, redelivered: bool) -> bytes:
    """A v1 delivery (protocol §4.5); ``redelivered`` after a promotion (§6.5)."""
    return _pack(
        {
            "event": "message",
            "seq": m.seq,
            "id": format_id(m.id),
            "created_at": m.created_at,
            "data": m.data,
            "redelivered": redelivered,
        }
    )


_ORIGINAL_DELIVERY: Final = {1: None}  # rmp_serde's unit variant index 1 (protocol §8.2)


def original_message(m: StoredMessage) -> bytes:
    """A delivery in the 0.0.3 format: exactly these keys, in this order (protocol §8.2).

    ``id`` is the raw 16 bytes and ``created_at`` is in whole seconds, as the original sent.
    """
    if len(m.id) != 16:
        raise InvalidState(f"a message id is 16 bytes, not {len(m.id)}")
    return _pack(
        {
            "command": _ORIGINAL_DELIVERY,
            "id": m.id,
            "created_at": m.created_at // 1000,
            "published": False,
            "published_at": 0,
            "data": m.data,
        }
    )


def error(code: ErrorCode, message: str, req: Req = None) -> bytes:
    """A refused request (protocol §4.6, codes §5); it never closes the connection."""
    event: dict[str, object] = {"event": "error", "code": code, "message": message}
    if req is not None:
        event["req"] = req
    return _pack(event)
