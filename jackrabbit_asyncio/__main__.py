"""``python -m jackrabbit_asyncio`` (and the ``jackrabbit`` script): the server, or the
``add`` / ``take`` terminal commands, or the ``token`` command.

The command line, the ready line, the ``--dev`` banner and the error messages all come from
``jackrabbit_host.cli`` (and ``jackrabbit_host.tls`` for certificate files), so this shell and
the threads one behave the same.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys

from jackrabbit_core import Config, JackrabbitError
from jackrabbit_host.access import TokenCommand, run_token
from jackrabbit_host.cli import (
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
    program_name,
    report,
    verify_error,
)
from jackrabbit_host.files import use_private_umask

from .client import ClientError
from .commands import run_add, run_take
from .server import serve


def main(argv: list[str] | None = None) -> int:
    """Run what the command line asks; returns the exit status."""
    configure_logging()
    prog = program_name(sys.argv[0], "jackrabbit_asyncio")
    try:
        command = parse_command(sys.argv[1:] if argv is None else argv, prog)
    except JackrabbitError as exc:
        return report(prog, exc, EXIT_USAGE)
    if isinstance(command, AddCommand | TakeCommand):
        return _client(command, prog)
    if isinstance(command, TokenCommand):
        return run_token(command)
    use_private_umask()
    try:
        return asyncio.run(_serve(command.config, prog))
    except JackrabbitError as exc:
        return report(prog, exc, EXIT_USAGE)


async def _serve(config: Config, prog: str) -> int:
    """Start, print the ready line, serve until SIGTERM/SIGINT. Start-up errors raise."""
    server = await serve(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    sys.setswitchinterval(SWITCH_INTERVAL)
    announce(config, server.port, prog)
    try:
        await server.serve_forever()
    except JackrabbitError as exc:  # the store failed to close
        return report(prog, exc, EXIT_FAILED)
    return EXIT_OK


def _client(command: AddCommand | TakeCommand, prog: str) -> int:
    try:
        if isinstance(command, AddCommand):
            return asyncio.run(run_add(command))
        return asyncio.run(run_take(command))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except JackrabbitError as exc:  # the --ca file
        return report(prog, exc, EXIT_USAGE)
    except ssl.SSLCertVerificationError as exc:
        return report(prog, verify_error(command.ca, exc.verify_message), EXIT_FAILED)
    except (ClientError, OSError) as exc:
        return report(prog, exc, EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main())
