"""The program both shells run (``python -m jackrabbit_asyncio``, ``python -m
jackrabbit_threads``, the ``jackrabbit`` script): the server, a terminal command (``add``,
``take``) or the ``token`` command.

A shell's ``__main__`` passes only what differs: how it serves (``Serve``) and how it runs the
``add`` and ``take`` commands. Everything a user sees (usage, the ready line, the ``--dev``
banner, one-line errors and exit statuses) is decided here and in ``jackrabbit_host.cli``, and
what each signal does to a running server here (``signals``): only how a shell hooks a handler
in differs.
"""

from __future__ import annotations

import signal
import ssl
import sys
from collections.abc import Callable
from typing import Protocol

from jackrabbit_core import Config, JackrabbitError
from jackrabbit_core.client_errors import ClientError

from .access import TokenCommand, run_token
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
#: message if it cannot), install the ``signals`` handlers, call ``ready(port)`` once it accepts
#: connections, and return once shut down (raising ``JackrabbitError`` if the store failed to
#: close).
Serve = Callable[[Config, Callable[[int], None]], None]


class Running(Protocol):
    """A started server, as the signals see it (both shells' ``Server``)."""

    def stop(self) -> None:
        """Shut down, then return from serving."""

    def reload(self) -> None:
        """Reload the certificate files and the ``--auth`` file (protocol §11.9)."""


def signals(server: Running) -> dict[signal.Signals, Callable[[], None]]:
    """What each signal does to a running server: SIGTERM and SIGINT stop it, SIGHUP reloads
    its certificates and ``--auth`` file. A shell installs these before calling ``ready``."""
    return {
        signal.SIGTERM: server.stop,
        signal.SIGINT: server.stop,
        signal.SIGHUP: server.reload,
    }


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
    if isinstance(command, TokenCommand):
        return run_token(command)
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
