"""Reading the vector files: their JSON notation, event patterns, and conversation scripts.

The notation and the script steps are described in ``vectors/make_vectors.py`` and
``README.md``. ``decode`` keeps every map as ``WireMap`` (its pairs in wire order) so that key
order can be checked where the contract fixes it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from .client import Client
from .harness import Target

VECTORS = Path(__file__).resolve().parent / "vectors"


class WireMap(list[tuple[Any, Any]]):
    """A decoded MessagePack map: its ``(key, value)`` pairs in wire order."""


def decode(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, object_pairs_hook=WireMap)


def load(kind: str) -> list[dict[str, Any]]:
    """The vectors of ``requests``, ``invalid`` or ``events``."""
    doc = json.loads((VECTORS / f"{kind}.json").read_text("utf-8"))
    vectors: list[dict[str, Any]] = doc["vectors"]
    return vectors


def from_json(value: Any) -> Any:
    """The Python value (``WireMap`` for maps) that a ``json`` field stands for."""
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return bytes.fromhex(value["$bin"])
        if set(value) == {"$ext"}:
            code, data = value["$ext"]
            return msgpack.ExtType(code, bytes.fromhex(data))
        if set(value) == {"$map"}:
            return WireMap((from_json(k), from_json(v)) for k, v in value["$map"])
        return WireMap((k, from_json(v)) for k, v in value.items())
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def encode(value: Any) -> bytes:
    """Pack a ``from_json`` value, maps in their given order."""

    def plain(v: Any) -> Any:
        if isinstance(v, WireMap):
            return {plain(k): plain(x) for k, x in v}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    data: bytes = msgpack.packb(plain(value), use_bin_type=True)
    return data


def readable(value: Any) -> Any:
    """A decoded value with maps as dicts, for messages."""
    if isinstance(value, WireMap):
        return {readable(k): readable(v) for k, v in value}
    if isinstance(value, list):
        return [readable(v) for v in value]
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _type_ok(name: str, v: Any) -> bool:
    if name == "int":
        return _is_int(v)
    if name == "str":
        return isinstance(v, str)
    if name == "bool":
        return isinstance(v, bool)
    if name == "bin":
        return isinstance(v, bytes)
    if name == "req":
        return _is_int(v) or isinstance(v, str)
    if name == "uuid":
        if not isinstance(v, str):
            return False
        try:
            return str(uuid.UUID(v)) == v
        except ValueError:
            return False
    if name == "uuid_bytes":
        return isinstance(v, bytes) and len(v) == 16
    if name == "ms":
        return _is_int(v) and 10**12 <= v < 10**14
    if name == "seconds":
        return _is_int(v) and 10**9 <= v < 10**11
    raise ValueError(f"unknown $type {name!r}")


def mismatch(pattern: Any, value: Any, path: str = "") -> str | None:
    """Why ``value`` (from ``decode``) does not match ``pattern``; None when it does."""
    where = path or "the event"
    if isinstance(pattern, dict) and set(pattern) == {"$type"}:
        ok = _type_ok(pattern["$type"], value)
        return None if ok else f"{where}: expected {pattern['$type']}, got {readable(value)!r}"
    if isinstance(pattern, dict) and set(pattern) == {"$bin"}:
        expected = bytes.fromhex(pattern["$bin"])
        return None if value == expected else f"{where}: expected {expected!r}, got {value!r}"
    if isinstance(pattern, dict):
        if not isinstance(value, WireMap):
            return f"{where}: expected a map, got {readable(value)!r}"
        if "$map" in pattern:
            pairs = pattern["$map"]
            keys = [readable(k) for k, _ in value]
            if keys != [k for k, _ in pairs]:
                return f"{where}: keys {keys} in this order expected {[k for k, _ in pairs]}"
            for (key, sub), (_, got) in zip(pairs, value, strict=True):
                why = mismatch(sub, got, f"{path}.{key}")
                if why:
                    return why
            return None
        keys = [k for k, _ in value]
        if len(set(keys)) != len(keys):
            return f"{where}: repeated keys {keys}"
        if set(keys) != set(pattern):
            return f"{where}: keys {sorted(map(str, keys))}, expected {sorted(pattern)}"
        got_by_key = dict(value)
        for key, sub in pattern.items():
            why = mismatch(sub, got_by_key[key], f"{path}.{key}")
            if why:
                return why
        return None
    if isinstance(pattern, list):
        if not isinstance(value, list) or isinstance(value, WireMap) or len(value) != len(pattern):
            return f"{where}: expected {pattern!r}, got {readable(value)!r}"
        for i, (sub, got) in enumerate(zip(pattern, value, strict=True)):
            why = mismatch(sub, got, f"{path}[{i}]")
            if why:
                return why
        return None
    same = type(pattern) is type(value) or (_is_int(pattern) and _is_int(value))
    if not same or pattern != value:
        return f"{where}: expected {pattern!r}, got {readable(value)!r}"
    return None


@dataclass
class Observed:
    """An event a script received: which connection, its bytes and its decoded form."""

    conn: str
    raw: bytes
    value: Any


@dataclass
class Script:
    """Runs one vector's conversation against a server, on one queue."""

    target: Target
    queue: str
    vectors: dict[str, dict[str, Any]]
    connect: Callable[..., Client]
    conns: dict[str, Client] = field(default_factory=dict)
    observed: list[Observed] = field(default_factory=list)

    def conn(self, name: str) -> Client:
        if name not in self.conns:
            self.conns[name] = self.connect(self.target, self.queue)
        return self.conns[name]

    def run(self, steps: list[dict[str, Any]]) -> None:
        for number, step in enumerate(steps, 1):
            client = self.conn(step["conn"])
            try:
                self._step(client, step)
            except AssertionError as exc:
                raise AssertionError(f"step {number} {json.dumps(step)}: {exc}") from None
            except TimeoutError:
                raise AssertionError(f"step {number} {json.dumps(step)}: timed out") from None

    def _step(self, client: Client, step: dict[str, Any]) -> None:
        if "send" in step:
            vector = self.vectors[step["send"]]
            data = bytes.fromhex(vector["hex"])
            if vector.get("frame") == "text":
                client.send_text(data.decode("utf-8"))
            else:
                client.send_bytes(data)
        elif "expect" in step:
            raw = client.recv_bytes()
            value = decode(raw)
            self.observed.append(Observed(step["conn"], raw, value))
            why = mismatch(step["expect"], value)
            assert why is None, why
        elif step.get("expect_nothing"):
            client.expect_quiet()
        elif "expect_close" in step:
            closed = client.expect_close()
            assert not closed.before, [readable(decode(b)) for b in closed.before]
            assert closed.code == step["expect_close"], (closed.code, closed.reason)
            assert closed.reason, "a close for bad input carries a reason"
        elif step.get("close"):
            client.close()
        else:
            raise ValueError(f"unknown step {step!r}")
