"""``python -m jackrabbit_asyncio``: the server, or the ``add`` / ``take`` terminal commands.

The command line, the ready line, the ``--dev`` banner and the start-up error messages all
come from ``jackrabbit_core.cli``, so this shell and the threads one behave the same.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from jackrabbit_core import Config, JackrabbitError
from jackrabbit_core.cli import AddCommand, TakeCommand, dev_banner, parse_command, ready_line

from .client import ClientError
from .commands import run_add, run_take
from .server import serve

PROG = "python -m jackrabbit_asyncio"
#: How long the writer thread may wait for the GIL after an fsync (``sys.setswitchinterval``):
#: the default 5 ms would cap the server at about 160 batches/s while the loop is busy.
SWITCH_INTERVAL = 0.001


def main(argv: list[str] | None = None) -> int:
    """Run what the command line asks; returns the exit status."""
    _configure_logging()
    try:
        command = parse_command(sys.argv[1:] if argv is None else argv, PROG)
    except JackrabbitError as exc:
        return _fail(exc)
    if isinstance(command, AddCommand | TakeCommand):
        return _client(command)
    try:
        return asyncio.run(_serve(command.config))
    except JackrabbitError as exc:
        return _fail(exc)


async def _serve(config: Config) -> int:
    """Start, print the ready line, serve until SIGTERM/SIGINT. Start-up errors raise."""
    server = await serve(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop)
    sys.setswitchinterval(SWITCH_INTERVAL)
    print(ready_line(config.host, server.port), flush=True)
    if config.dev:
        print(dev_banner(config, server.port, "jackrabbit_asyncio"), flush=True)
    try:
        await server.serve_forever()
    except JackrabbitError as exc:  # the store failed to close
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _client(command: AddCommand | TakeCommand) -> int:
    try:
        if isinstance(command, AddCommand):
            return asyncio.run(run_add(command))
        return asyncio.run(run_take(command))
    except KeyboardInterrupt:
        return 130
    except (ClientError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1


def _fail(exc: BaseException) -> int:
    print(f"{PROG}: error: {exc}", file=sys.stderr)
    return 2


def _configure_logging() -> None:
    """Quiet by default: WARNING, or the level named by ``JACKRABBIT_LOG`` (e.g. ``info``)."""
    name = os.environ.get("JACKRABBIT_LOG", "warning").upper()
    level = logging.getLevelName(name)
    logging.basicConfig(
        level=level if isinstance(level, int) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


if __name__ == "__main__":
    sys.exit(main())
