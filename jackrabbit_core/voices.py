"""How each dialect says what the server has to say: one voice per dialect (protocol §4, §8).

The server decides *what* to tell a connection (an add is durable, a take is answered, a
message is delivered, a request is refused); the connection's voice decides the bytes, or that
nothing is said, or that the connection is closed instead. A v1 client hears every event; an
original 0.0.3 client can decode only its deliveries, so it hears nothing else and a refusal
closes it with a code and a reason (protocol §8.4). This is the only place the dialects differ
after decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from . import codes, envelope
from .codes import ErrorCode
from .envelope import Dialect
from .records import Req, StoredMessage

__all__ = ["ORIGINAL", "V1", "Answer", "Frames", "Hangup", "Speech", "Voice", "voice_of"]

#: A close reason is at most 123 bytes (RFC 6455 §5.5); ours stay ASCII and under it.
_MAX_REASON: Final = 120


@dataclass(frozen=True, slots=True)
class Hangup:
    """Close the connection with ``code`` and ``reason`` instead of answering."""

    code: int
    reason: str


#: What a voice makes of an event: the payload of one binary frame, a close, or silence.
Speech = bytes | Hangup | None


@dataclass(frozen=True, slots=True)
class Answer:
    """Say ``speech`` to connection ``conn`` (what the parts of the server return)."""

    conn: int
    speech: Speech


@dataclass(frozen=True, slots=True)
class Frames:
    """Deliveries to consumer ``conn``, one frame payload each, for seqs up to ``through``."""

    conn: int
    payloads: list[bytes]
    through: int


class Voice:
    """The v1 voice (protocol §4): every event is a MessagePack map."""

    __slots__ = ()
    dialect: Dialect = Dialect.V1

    def added(self, message: StoredMessage, duplicate: bool, req: Req) -> Speech:
        """An add is durable, or a duplicate of an earlier one (§4.1, §6.8)."""
        return envelope.added(
            message.seq, message.id, message.created_at, duplicate=duplicate, req=req
        )

    def subscribed(self, role: Literal["active", "standby"], epoch: int | None, req: Req) -> Speech:
        """The reply to a take (§4.2)."""
        return envelope.subscribed(role, epoch, req)

    def active(self, epoch: int) -> Speech:
        """This standby was promoted (§4.3)."""
        return envelope.active(epoch)

    def standby(self, epoch: int) -> Speech:
        """This consumer's handover is done (§4.4)."""
        return envelope.standby(epoch)

    def message(self, message: StoredMessage, redelivered: bool) -> bytes:
        """One delivery (§4.5)."""
        return envelope.message(message, redelivered)

    def refused(self, code: ErrorCode, text: str, req: Req, close_code: int) -> Speech:
        """A refused request: an ``error`` event, the connection stays open (§4.6)."""
        return envelope.error(code, text, req)

    def unavailable(self, reason: str, req: Req) -> Speech:
        """An add whose write failed: maybe stored, retry with a key (§7.1)."""
        message = f"write failed, maybe not stored (retry with a key): {reason}"
        return envelope.error(codes.UNAVAILABLE, message, req)


class _OriginalVoice(Voice):
    """The 0.0.3 voice (protocol §8): deliveries only; a refusal closes the connection."""

    __slots__ = ()
    dialect: Dialect = Dialect.ORIGINAL

    def added(self, message: StoredMessage, duplicate: bool, req: Req) -> Speech:
        return None

    def subscribed(self, role: Literal["active", "standby"], epoch: int | None, req: Req) -> Speech:
        return None

    def active(self, epoch: int) -> Speech:
        return None

    def standby(self, epoch: int) -> Speech:
        return None

    def message(self, message: StoredMessage, redelivered: bool) -> bytes:
        return envelope.original_message(message)

    def refused(self, code: ErrorCode, text: str, req: Req, close_code: int) -> Speech:
        return Hangup(close_code, text[:_MAX_REASON])

    def unavailable(self, reason: str, req: Req) -> Speech:
        return Hangup(codes.CLOSE_INTERNAL_ERROR, "store failed")


V1: Final = Voice()
ORIGINAL: Final = _OriginalVoice()


def voice_of(dialect: Dialect) -> Voice:
    """The voice that speaks ``dialect``."""
    return ORIGINAL if dialect is Dialect.ORIGINAL else V1
