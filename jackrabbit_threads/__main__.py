"""``python -m jackrabbit_threads``: the server, or the ``add`` / ``take`` terminal commands;
``jackrabbit_host.program`` runs the command line, the same for both shells, with this shell's
way of serving and of running the commands."""

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

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready(server.port)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
