"""``python -m jackrabbit_threads``: the server, or the ``add`` / ``take`` terminal commands.

The command line, the ready line, the ``--dev`` banner and the start-up error messages all
come from ``jackrabbit_core.cli``, so this shell and the asyncio one behave the same.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

from jackrabbit_core import Config, JackrabbitError
from jackrabbit_core.cli import AddCommand, TakeCommand, dev_banner, parse_command, ready_line

from .client import ClientError
from .commands import run_add, run_take
from .server import serve

PROG = "python -m jackrabbit_threads"
#: How long a thread may hold the GIL while another waits for it (``sys.setswitchinterval``).
#: The store writer waits that long for the GIL after each fsync, and every hand-off between
#: a reader, the store writer and a writer thread can too: the default 5 ms would cap the
#: server at about 160 batches/s while the readers are busy.
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
    return _serve(command.config)


def _serve(config: Config) -> int:
    try:
        server = serve(config)
    except JackrabbitError as exc:
        return _fail(exc)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.setswitchinterval(SWITCH_INTERVAL)
    print(ready_line(config.host, server.port), flush=True)
    if config.dev:
        print(dev_banner(config, server.port, "jackrabbit_threads"), flush=True)
    try:
        server.serve_forever()
    except JackrabbitError as exc:  # the store failed to close
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _client(command: AddCommand | TakeCommand) -> int:
    try:
        if isinstance(command, AddCommand):
            return run_add(command)
        return run_take(command)
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
