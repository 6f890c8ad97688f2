"""``python -m jackrabbit_threads``: the server, the ``add`` / ``take`` terminal commands or the
``token`` command; ``jackrabbit_host.program`` runs the command line, the same for both shells,
with this shell's way of serving and of running the commands."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType

from jackrabbit_core import Config
from jackrabbit_host import program

from .commands import run_add, run_take
from .server import serve


def main(argv: list[str] | None = None) -> int:
    """Run what the command line asks; returns the exit status."""
    return program.run(argv, "jackrabbit_threads", serve=_serve, add=run_add, take=run_take)


def _serve(config: Config, ready: Callable[[int], None]) -> None:
    server = serve(config)
    for signum, handler in program.signals(server).items():
        signal.signal(signum, _on(handler))
    ready(server.port)
    server.serve_forever()


def _on(handler: Callable[[], None]) -> Callable[[int, FrameType | None], None]:
    """``handler`` as a ``signal.signal`` handler (the server's ``stop`` and ``reload`` are
    safe in one)."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        handler()

    return on_signal


if __name__ == "__main__":
    sys.exit(main())
