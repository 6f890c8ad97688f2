"""``python -m jackrabbit_asyncio``: the server, or the ``add`` / ``take`` terminal commands.

The command line, the ready line, the ``--dev`` banner and the start-up error messages all
come from ``jackrabbit_core.cli``, so this shell and the threads one behave the same.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from jackrabbit_core import Config, JackrabbitError
from jackrabbit_core.cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    SWITCH_INTERVAL,
    AddCommand,
    TakeCommand,
    announce,
    configure_logging,
    parse_command,
    report,
)

from .client import ClientError
from .commands import run_add, run_take
from .server import serve

PROG = "python -m jackrabbit_asyncio"


def main(argv: list[str] | None = None) -> int:
    """Run what the command line asks; returns the exit status."""
    configure_logging()
    try:
        command = parse_command(sys.argv[1:] if argv is None else argv, PROG)
    except JackrabbitError as exc:
        return report(PROG, exc, EXIT_USAGE)
    if isinstance(command, AddCommand | TakeCommand):
        return _client(command)
    try:
        return asyncio.run(_serve(command.config))
    except JackrabbitError as exc:
        return report(PROG, exc, EXIT_USAGE)


async def _serve(config: Config) -> int:
    """Start, print the ready line, serve until SIGTERM/SIGINT. Start-up errors raise."""
    server = await serve(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop)
    sys.setswitchinterval(SWITCH_INTERVAL)
    announce(config, server.port, "jackrabbit_asyncio")
    try:
        await server.serve_forever()
    except JackrabbitError as exc:  # the store failed to close
        return report(PROG, exc, EXIT_FAILED)
    return EXIT_OK


def _client(command: AddCommand | TakeCommand) -> int:
    try:
        if isinstance(command, AddCommand):
            return asyncio.run(run_add(command))
        return asyncio.run(run_take(command))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (ClientError, OSError) as exc:
        return report(PROG, exc, EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main())
