"""``python -m jackrabbit_threads``: the server, the ``add`` / ``take`` terminal commands, or
the ``token`` command.

The command line, the ready line, the ``--dev`` banner and the error messages all come from
``jackrabbit_host.cli`` (and ``jackrabbit_host.tls`` for certificate files), so this shell and
the asyncio one behave the same.
"""

from __future__ import annotations

import signal
import ssl
import sys
from types import FrameType

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
    prog = program_name(sys.argv[0], "jackrabbit_threads")
    try:
        command = parse_command(sys.argv[1:] if argv is None else argv, prog)
    except JackrabbitError as exc:
        return report(prog, exc, EXIT_USAGE)
    if isinstance(command, AddCommand | TakeCommand):
        return _client(command, prog)
    if isinstance(command, TokenCommand):
        return run_token(command)
    use_private_umask()
    return _serve(command.config, prog)


def _serve(config: Config, prog: str) -> int:
    try:
        server = serve(config)
    except JackrabbitError as exc:
        return report(prog, exc, EXIT_USAGE)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stop()

    def reload(signum: int, frame: FrameType | None) -> None:
        server.reload()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    sys.setswitchinterval(SWITCH_INTERVAL)
    announce(config, server.port, prog)
    try:
        server.serve_forever()
    except JackrabbitError as exc:  # the store failed to close
        return report(prog, exc, EXIT_FAILED)
    return EXIT_OK


def _client(command: AddCommand | TakeCommand, prog: str) -> int:
    try:
        if isinstance(command, AddCommand):
            return run_add(command)
        return run_take(command)
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
