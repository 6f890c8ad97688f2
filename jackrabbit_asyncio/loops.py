"""Which event loop the asyncio shell runs on: uvloop's when it is installed (the ``uvloop``
extra, a faster drop-in loop), the standard library's otherwise or when the environment
variable ``JACKRABBIT_LOOP`` is ``asyncio``. The shell uses only what both loops offer."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("jackrabbit.asyncio")

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` if it is installed and not turned off, else None (the
    standard loop)."""
    if os.environ.get("JACKRABBIT_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop ``loop_factory`` chooses."""
    factory = loop_factory()
    log.info("event loop: %s", "uvloop" if factory is not None else "asyncio")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
