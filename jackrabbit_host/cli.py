"""The command line both shells share: which program to run, and what it prints.

``python -m jackrabbit_asyncio`` and ``python -m jackrabbit_threads`` (and the ``jackrabbit``
script) run the server unless the first argument is ``add`` or ``take``, the terminal
commands, or ``token``, which makes a token for the ``--auth`` file. The words a user sees
(usage, the ready line, the ``--dev`` banner, start-up and client errors) are written here
once so the two shells print exactly the same thing; those about certificate files are in
``jackrabbit_host.tls``, which loads them, and those about the ``--auth`` file in
``jackrabbit_host.access``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from jackrabbit_core.client import Endpoint, check_token
from jackrabbit_core.config import Config
from jackrabbit_core.envelope import DEFAULT_PREFETCH, MAX_PREFETCH
from jackrabbit_core.exceptions import ConfigError
from jackrabbit_core.routes import DEFAULT_QUEUE

from .access import TokenCommand, open_access_warning, parse_token
from .devcerts import dev_paths
from .options import RaisingParser, parse_args

DEV_URL = "wss://127.0.0.1:8443"
#: Where the terminal commands find a token when ``--token`` is not given.
TOKEN_VARIABLE = "JACKRABBIT_TOKEN"
#: Where the terminal commands look for a CA when ``--ca`` is not given: a ``--dev`` server's,
#: with the default ``--db``, started in the current directory.
DEV_CA = dev_paths("tmp").ca

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
    #: The queue named by ``--queue`` (None: the URL's path names it, or it is ``default``).
    queue: str | None
    ca: str | None
    messages: tuple[str, ...]
    key: str | None
    #: The bearer token (``--token`` or ``JACKRABBIT_TOKEN``); never shown.
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class TakeCommand:
    """``take``: join the line, print messages as they come, ack them."""

    url: str
    queue: str | None
    ca: str | None
    prefetch: int
    count: int | None
    #: The bearer token (``--token`` or ``JACKRABBIT_TOKEN``); never shown.
    token: str | None = field(default=None, repr=False)


Command = Serve | AddCommand | TakeCommand | TokenCommand


def program_name(argv0: str, module: str) -> str:
    """How the user ran us, for usage lines: ``jackrabbit`` (the installed script) or
    ``python -m MODULE``."""
    name = os.path.basename(argv0)
    as_module = name == "__main__.py" or not name or name.startswith("-")  # -m, -c
    return f"python -m {module}" if as_module else name


def _client_parser(prog: str, verb: str, description: str) -> argparse.ArgumentParser:
    parser = RaisingParser(prog=f"{prog} {verb}", description=description)
    parser.add_argument(
        "--url",
        default=DEV_URL,
        help="server URL, wss://HOST[:PORT][/queues/NAME] (default %(default)s)",
    )
    parser.add_argument(
        "--queue",
        default=None,
        help="queue name; the URL's /queues/NAME path names it too, and giving both is an "
        f"error unless they agree (default: {DEFAULT_QUEUE})",
    )
    parser.add_argument(
        "--ca",
        default=None,
        help="CA file to trust (default: the --dev CA under ./tmp if it exists, else the "
        "system's); a --dev server prints its CA's path",
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"bearer token for a server with --auth (default: ${TOKEN_VARIABLE}; prefer the "
        "variable, since other users of the machine can see a command line)",
    )
    return parser


def parse_command(argv: list[str], prog: str, environ: Mapping[str, str] | None = None) -> Command:
    """Decide what to run from ``argv`` (without the program name); the terminal commands'
    token comes from ``environ`` (default ``os.environ``) when ``--token`` is not given."""
    environ = os.environ if environ is None else environ
    if argv[:1] == ["add"]:
        parser = _client_parser(
            prog, "add", "Add messages to a queue and print each one's seq once it is stored."
        )
        parser.add_argument("--key", default=None, help="idempotency key (one message only)")
        parser.add_argument("messages", nargs="*", help="messages; none = read stdin lines")
        ns = parser.parse_args(argv[1:])
        _check_endpoint(ns.url, ns.queue)
        if ns.key is not None and len(ns.messages) != 1:
            raise ConfigError("--key needs exactly one message argument")
        token = _token(ns.token, environ)
        return AddCommand(ns.url, ns.queue, _default_ca(ns.ca), tuple(ns.messages), ns.key, token)
    if argv[:1] == ["take"]:
        parser = _client_parser(
            prog,
            "take",
            "Join a queue's consumer line; print each message as SEQ<TAB>DATA and "
            "acknowledge it, until --count messages, Ctrl-C or the server goes away.",
        )
        parser.add_argument(
            "--prefetch",
            type=_prefetch,
            default=DEFAULT_PREFETCH,
            metavar="N",
            help="most messages delivered and not yet acknowledged, 1 to "
            f"{MAX_PREFETCH} (default %(default)s, the server's)",
        )
        parser.add_argument(
            "--count", type=int, default=None, metavar="N", help="stop after N messages"
        )
        ns = parser.parse_args(argv[1:])
        _check_endpoint(ns.url, ns.queue)
        token = _token(ns.token, environ)
        return TakeCommand(ns.url, ns.queue, _default_ca(ns.ca), ns.prefetch, ns.count, token)
    if argv[:1] == ["token"]:
        return _token_command(argv[1:], prog)
    return Serve(parse_args(argv, prog))


def _token_command(argv: list[str], prog: str) -> TokenCommand:
    """``token NAME --allow GRANT ...`` (protocol §10.3)."""
    parser = RaisingParser(
        prog=f"{prog} token",
        description="Make a new random token for a principal of the --auth file: print the "
        "token once, then the [[principal]] block holding its SHA-256 to add to the file.",
    )
    parser.add_argument("name", help="the principal's name (shown in logs, not a secret)")
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="GRANT",
        help="ACTION:PATTERN, e.g. produce:orders or consume:orders-* (repeatable); actions "
        "are produce, consume, read and admin",
    )
    ns = parser.parse_args(argv)
    return parse_token(ns.name, ns.allow)


def _prefetch(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 < value <= MAX_PREFETCH:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_PREFETCH}: {text!r}")
    return value


def _check_endpoint(url: str, queue: str | None) -> None:
    """``--url`` and ``--queue`` as the client will use them (see ``Endpoint.parse``)."""
    try:
        Endpoint.parse(url, queue)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _token(given: str | None, environ: Mapping[str, str]) -> str | None:
    """``--token``, else ``JACKRABBIT_TOKEN`` (an empty variable counts as unset), checked
    without ever repeating it."""
    source = "--token" if given is not None else TOKEN_VARIABLE
    token = given if given is not None else environ.get(TOKEN_VARIABLE) or None
    if token is not None:
        try:
            check_token(token)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return token


def _default_ca(ca: str | None) -> str | None:
    if ca is not None:
        return ca
    return DEV_CA if os.path.exists(DEV_CA) else None


def take_ended(url: str, code: int | None, reason: str) -> str:
    """Why ``take`` stopped before ``--count`` messages: the server ended the connection."""
    how = f"close code {code}" if code is not None else "no close code"
    return f"the server at {url} ended the connection ({how}{': ' + reason if reason else ''})"


def verify_error(ca: str | None, detail: str) -> str:
    """A one-line message for a server certificate the client could not verify: which CA
    was tried and how to give the right one."""
    tried = f"the CA file {ca}" if ca is not None else "the system's CAs (no --ca given)"
    return (
        f"cannot verify the server's certificate ({detail}) with {tried}: pass --ca FILE, "
        f"the CA that signed it; a --dev server prints its CA's path when it starts "
        f"(DB/dev-certs/ca.pem, by default {DEV_CA} in the directory it runs in)"
    )


def ready_line(host: str, port: int) -> str:
    """The line printed (and flushed) on stdout once the server accepts connections."""
    shown = f"[{host}]" if ":" in host else host
    return f"jackrabbit listening on wss://{shown}:{port}"


def dev_banner(config: Config, port: int, prog: str) -> str:
    """What ``--dev`` prints after the ready line: the CA file (an absolute path, so the
    commands work from any directory) and the commands to try."""
    ca = os.path.abspath(dev_paths(config.db).ca)
    host = f"[{config.host}]" if ":" in config.host else config.host
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1"
    url = f"wss://{host}:{port}"
    quoted = shlex.quote(ca)
    return (
        f"dev CA certificate: {ca}\n"
        f"try: {prog} add --url {url} --ca {quoted} hello\n"
        f"     {prog} take --url {url} --ca {quoted}"
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


def configure_logging() -> None:
    """Quiet by default: WARNING, or the level named by ``JACKRABBIT_LOG`` (e.g. ``info``)."""
    name = os.environ.get("JACKRABBIT_LOG", "warning").upper()
    level = logging.getLevelName(name)
    logging.basicConfig(
        level=level if isinstance(level, int) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def report(prog: str, error: BaseException | str, status: int) -> int:
    """Print ``error`` as one line on stderr (never a traceback) and return ``status``."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return status


def announce(config: Config, port: int, prog: str) -> None:
    """Print the ready line (and the ``--dev`` banner) on stdout, flushed (CONTRACT §1)."""
    print(ready_line(config.host, port), flush=True)
    if config.dev:
        print(dev_banner(config, port, prog), flush=True)
    warning = open_access_warning(config)
    if warning is not None:
        print(f"{prog}: {warning}", file=sys.stderr, flush=True)
