"""The command line both shells share: which program to run, and what it prints.

``python -m jackrabbit_asyncio`` and ``python -m jackrabbit_threads`` (and the ``jackrabbit``
script) run the server unless the first argument is ``add`` or ``take``, the terminal
commands. The words a user sees at start-up (the ready line, the ``--dev`` banner, start-up
errors) are written here once so the two shells print exactly the same thing.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from dataclasses import dataclass

from .config import Config, parse_args
from .devcerts import dev_paths
from .exceptions import ConfigError
from .routes import DEFAULT_QUEUE, QUEUE_NAME

DEV_URL = "wss://127.0.0.1:8443"

#: How long a thread may hold the GIL while another waits (``sys.setswitchinterval``). The
#: store writer waits that long for the GIL after each fsync: the default 5 ms would cap a
#: busy server at about 160 batches/s. Both shells set it when they start serving.
SWITCH_INTERVAL = 0.001

#: Exit statuses shared by both shells.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass(frozen=True, slots=True)
class Serve:
    """Run the server."""

    config: Config


@dataclass(frozen=True, slots=True)
class AddCommand:
    """``add``: send messages (the arguments, or stdin lines) and print each seq."""

    url: str
    queue: str
    ca: str | None
    messages: tuple[str, ...]
    key: str | None


@dataclass(frozen=True, slots=True)
class TakeCommand:
    """``take``: join the line, print messages as they come, ack them."""

    url: str
    queue: str
    ca: str | None
    prefetch: int
    count: int | None


Command = Serve | AddCommand | TakeCommand


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def _client_parser(prog: str, verb: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=f"{prog} {verb}")
    parser.add_argument("--url", default=DEV_URL, help="server URL (default %(default)s)")
    parser.add_argument("--queue", default=DEFAULT_QUEUE, help="queue name (default %(default)s)")
    parser.add_argument(
        "--ca",
        default=None,
        help="CA file to trust (default: the --dev CA under ./tmp if it exists, else the system's)",
    )
    return parser


def parse_command(argv: list[str], prog: str) -> Command:
    """Decide what to run from ``argv`` (without the program name)."""
    if argv[:1] == ["add"]:
        parser = _client_parser(prog, "add")
        parser.add_argument("--key", default=None, help="idempotency key (one message only)")
        parser.add_argument("messages", nargs="*", help="messages; none = read stdin lines")
        ns = parser.parse_args(argv[1:])
        _check_queue(ns.queue)
        if ns.key is not None and len(ns.messages) != 1:
            raise ConfigError("--key needs exactly one message argument")
        return AddCommand(ns.url, ns.queue, _default_ca(ns.ca), tuple(ns.messages), ns.key)
    if argv[:1] == ["take"]:
        parser = _client_parser(prog, "take")
        parser.add_argument("--prefetch", type=int, default=100, help="(default %(default)s)")
        parser.add_argument("--count", type=int, default=None, help="stop after N messages")
        ns = parser.parse_args(argv[1:])
        _check_queue(ns.queue)
        return TakeCommand(ns.url, ns.queue, _default_ca(ns.ca), ns.prefetch, ns.count)
    return Serve(parse_args(argv, prog))


def _check_queue(name: str) -> None:
    if not QUEUE_NAME.fullmatch(name):
        raise ConfigError(f"invalid queue name {name!r} (protocol §1.3)")


def _default_ca(ca: str | None) -> str | None:
    if ca is not None:
        return ca
    candidate = dev_paths("tmp").ca
    return candidate if os.path.exists(candidate) else None


def ready_line(host: str, port: int) -> str:
    """The line printed (and flushed) on stdout once the server accepts connections."""
    shown = f"[{host}]" if ":" in host else host
    return f"jackrabbit listening on wss://{shown}:{port}"


def dev_banner(config: Config, port: int, module: str) -> str:
    """What ``--dev`` prints after the ready line: the CA file and a command to try."""
    ca = dev_paths(config.db).ca
    host = f"[{config.host}]" if ":" in config.host else config.host
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1"
    url = f"wss://{host}:{port}"
    return (
        f"dev CA certificate: {ca}\n"
        f"try: python -m {module} add --url {url} --ca {ca} hello\n"
        f"     python -m {module} take --url {url} --ca {ca}"
    )


def bind_error(config: Config, exc: OSError) -> str:
    """A one-line message for a failure to listen on ``--host``/``--port``."""
    where = f"{config.host}:{config.port}"
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: the port is already in use"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need root)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: no such local address"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def tls_error(config: Config, exc: Exception) -> str:
    """A one-line message for certificate files that cannot be loaded."""
    files = f"--chain-cert {config.chain_cert} / --private-key {config.private_key}"
    if isinstance(exc, FileNotFoundError):
        return f"certificate file not found: {exc.filename or files} (use --dev to make one)"
    if isinstance(exc, PermissionError):
        return f"certificate file not readable: {exc.filename or files}"
    text = str(exc)
    if "KEY_VALUES_MISMATCH" in text or "key values mismatch" in text:
        return f"the private key does not match the certificate ({files})"
    return f"cannot load TLS certificate ({files}): {text}"


def configure_logging() -> None:
    """Quiet by default: WARNING, or the level named by ``JACKRABBIT_LOG`` (e.g. ``info``)."""
    name = os.environ.get("JACKRABBIT_LOG", "warning").upper()
    level = logging.getLevelName(name)
    logging.basicConfig(
        level=level if isinstance(level, int) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def report(prog: str, exc: BaseException, status: int) -> int:
    """Print ``exc`` as one line on stderr (never a traceback) and return ``status``."""
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return status


def announce(config: Config, port: int, module: str) -> None:
    """Print the ready line (and the ``--dev`` banner) on stdout, flushed (CONTRACT §1)."""
    print(ready_line(config.host, port), flush=True)
    if config.dev:
        print(dev_banner(config, port, module), flush=True)
