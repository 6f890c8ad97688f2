"""``python -m jackrabbit_asyncio`` (and the ``jackrabbit`` script): the server, the ``add`` /
``take`` terminal commands or the ``token`` command; ``jackrabbit_host.program`` runs the command
line, the same for both shells, with this shell's way of serving and of running the commands."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from jackrabbit_core import Config
from jackrabbit_host import program

from . import loops
from .commands import run_add, run_take
from .server import serve


def main(argv: list[str] | None = None) -> int:
    """Run what the command line asks; returns the exit status."""
    return program.run(
        argv,
        "jackrabbit_asyncio",
        serve=lambda config, ready: loops.run(_serve(config, ready)),
        add=lambda command: asyncio.run(run_add(command)),
        take=lambda command: asyncio.run(run_take(command)),
    )


async def _serve(config: Config, ready: Callable[[int], None]) -> None:
    server = await serve(config)
    loop = asyncio.get_running_loop()
    for signum, handler in program.signals(server).items():
        loop.add_signal_handler(signum, handler)
    ready(server.port)
    await server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
