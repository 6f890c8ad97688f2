"""Message ids: random version 4 UUIDs, whichever shell makes them."""

from __future__ import annotations

import uuid

from jackrabbit_host.ids import uuid4_bytes_factory


def test_message_ids_are_random_version_4_uuids() -> None:
    new_id = uuid4_bytes_factory()
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for raw in ids:
        parsed = uuid.UUID(bytes=raw)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
