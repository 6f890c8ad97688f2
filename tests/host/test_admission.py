"""``jackrabbit_host.admission.Door``, the admission policy both shells share, on its own:
fake handshakes and a clock passed in (the shells' sockets are tested in ``tests/shells``)."""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field

import pytest

from jackrabbit_host.admission import Door
from jackrabbit_host.limits import ACCEPT_PAUSE, PEER_STALL

log = logging.getLogger("test.admission")


@dataclass(eq=False)
class Fake:
    """A handshake; ``speaks_at`` is when its peer's bytes would be found by a last look."""

    name: str
    heard_at: float | None = None
    speaks_at: float | None = None


@dataclass
class Shell:
    """What a shell does for the door: looks and drops, recorded."""

    door: Door[Fake]
    now: float = 0.0
    dropped: list[str] = field(default_factory=list)
    looked: list[str] = field(default_factory=list)

    def look(self, handshake: Fake) -> None:
        self.looked.append(handshake.name)
        if handshake.speaks_at is not None and handshake.speaks_at <= self.now:
            handshake.heard_at = handshake.speaks_at

    def drop(self, handshake: Fake) -> None:
        self.dropped.append(handshake.name)
        self.door.discard(handshake)

    def room(self, held: int = 0) -> float | None:
        return self.door.make_room(held, self.now, self.look, self.drop)


def _shell(*, slots: int = 100, limit: int = 3, timeout: float = 5.0) -> Shell:
    return Shell(Door(log, slots=slots, timeout=timeout, limit=limit))


def _fill(shell: Shell, *handshakes: Fake) -> None:
    for handshake in handshakes:
        assert shell.room() is None
        shell.door.add(handshake, shell.now)


def test_the_oldest_silent_handshake_makes_room_after_a_last_look() -> None:
    shell = _shell()
    early, late, talking = Fake("early", speaks_at=0.0), Fake("late"), Fake("talking", 0.0)
    _fill(shell, talking, early, late)
    assert shell.room() is None
    # "early" had spoken after all (found by the last look): the next silent one goes.
    assert shell.looked == ["early", "late"] and shell.dropped == ["late"]


def test_when_every_handshake_moves_newcomers_wait_until_one_stalls() -> None:
    shell = _shell()
    a, b, c = Fake("a", heard_at=0.0), Fake("b", heard_at=0.5), Fake("c", heard_at=0.2)
    _fill(shell, a, b, c)
    shell.now = 0.9
    assert shell.room() == PEER_STALL  # until "a", heard from longest ago, stalls
    assert shell.dropped == []
    shell.now = PEER_STALL
    assert shell.room() is None
    assert shell.dropped == ["a"]


def test_every_slot_counts_from_the_accept() -> None:
    shell = _shell(slots=4, limit=10)
    _fill(shell, Fake("a"), Fake("b"))
    assert not shell.door.full(held=1)
    assert shell.door.full(held=2)
    # Room is made within the slots too: two held, two handshaking, one more wanted.
    assert shell.room(held=2) is None
    assert shell.dropped == ["a"]
    # All slots serving and nothing to displace: accept and refuse.
    empty = _shell(slots=2)
    assert empty.room(held=2) is None and empty.door.full(held=2)


def test_handshakes_expire_in_accept_order() -> None:
    shell = _shell(limit=10, timeout=1.0)
    first, second = Fake("first"), Fake("second")
    shell.door.add(first, 0.0)
    shell.door.add(second, 0.5)
    assert shell.door.next_deadline() == 1.0
    assert shell.door.expired(0.99) == []
    assert shell.door.expired(1.0) == [first]
    assert shell.door.next_deadline() == 1.5
    assert shell.door.expired(9.0) == [second] and shell.door.next_deadline() is None


def test_out_of_descriptors_drops_the_oldest_else_pauses(caplog: pytest.LogCaptureFixture) -> None:
    shell = _shell()
    oldest = Fake("oldest")
    _fill(shell, oldest, Fake("next"))
    emfile = OSError(errno.EMFILE, "Too many open files")
    assert shell.door.accept_failed(emfile, 3.0) is oldest
    other = OSError(errno.ENOMEM, "Cannot allocate memory")
    with caplog.at_level(logging.WARNING, logger="test.admission"):
        assert shell.door.accept_failed(other, 3.0) == 3.0 + ACCEPT_PAUSE
        assert shell.door.accept_failed(other, 4.0) == 4.0 + ACCEPT_PAUSE
    assert len(caplog.records) == 1  # said once, not on every failure


def test_refusals_are_logged_now_and_then(caplog: pytest.LogCaptureFixture) -> None:
    shell = _shell(slots=2)
    with caplog.at_level(logging.WARNING, logger="test.admission"):
        for second in range(5):
            shell.door.refuse(float(second))
        shell.door.refuse(60.0)
    assert [r.getMessage() for r in caplog.records] == [
        "refused 1 connection(s): all 2 slots are taken",
        "refused 5 connection(s): all 2 slots are taken",
    ]
