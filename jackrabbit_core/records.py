"""The plain values the core passes between its modules: a stored message and a request id."""

from __future__ import annotations

from dataclasses import dataclass

#: The optional ``"req"`` of a v1 request, echoed in its reply (protocol §3.5).
Req = int | str | None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message as kept in the store: its place in the queue and what the producer sent."""

    seq: int
    #: The message's UUID as 16 bytes (shown as text in v1, sent raw to original clients).
    id: bytes
    #: When the server accepted it, Unix time in milliseconds.
    created_at: int
    data: bytes
