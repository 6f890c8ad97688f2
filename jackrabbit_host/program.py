"""The program both shells run (``python -m jackrabbit_asyncio``, ``python -m
jackrabbit_threads``, the ``jackrabbit`` script): the server, or a terminal command.

A shell's ``__main__`` passes only what differs: how it serves (``Serve``) and how it runs the
``add`` and ``take`` commands. Everything a user sees (usage, the ready line, the ``--dev``
banner, one-line errors and exit statuses) is decided here and in ``jackrabbit_host.cli``.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Callable

from jackrabbit_core import Config, JackrabbitError
from jackrabbit_core.client_errors import ClientError

from .cli import (
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
from .files import use_private_umask

#: How a shell serves: start serving ``config`` (raising ``JackrabbitError`` with a one-line
#: message if it cannot), call ``ready(port)`` once it accepts connections, stop on SIGTERM and
#: SIGINT, and return once shut down (raising ``JackrabbitError`` if the store failed to close).
Serve = Callable[[Config, Callable[[int], None]], None]


def run(
    argv: list[str] | None,
    module: str,
    *,
    serve: Serve,
    add: Callable[[AddCommand], int],
    take: Callable[[TakeCommand], int],
) -> int:
    """Run what the command line asks; returns the exit status."""
    configure_logging()
    prog = program_name(sys.argv[0], module)
    try:
        command = parse_command(sys.argv[1:] if argv is None else argv, prog)
    except JackrabbitError as exc:
        return report(prog, exc, EXIT_USAGE)
    if isinstance(command, AddCommand):
        return _client(lambda: add(command), command.ca, prog)
    if isinstance(command, TakeCommand):
        return _client(lambda: take(command), command.ca, prog)
    return _serve(serve, command.config, prog)


def _serve(serve: Serve, config: Config, prog: str) -> int:
    use_private_umask()
    started = False

    def ready(port: int) -> None:
        nonlocal started
        started = True
        sys.setswitchinterval(SWITCH_INTERVAL)
        announce(config, port, prog)

    try:
        serve(config, ready)
    except JackrabbitError as exc:  # start-up (usage), or the store failed to close
        return report(prog, exc, EXIT_FAILED if started else EXIT_USAGE)
    return EXIT_OK


def _client(command: Callable[[], int], ca: str | None, prog: str) -> int:
    try:
        return command()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except JackrabbitError as exc:  # the --ca file
        return report(prog, exc, EXIT_USAGE)
    except ssl.SSLCertVerificationError as exc:
        return report(prog, verify_error(ca, exc.verify_message), EXIT_FAILED)
    except (ClientError, OSError) as exc:
        return report(prog, exc, EXIT_FAILED)
