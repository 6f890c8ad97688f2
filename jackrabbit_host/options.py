"""The one parser of the server's command line both shells share.

The flags, defaults and aliases are part of the external contract (README, "Command line");
keeping them here, once, is what makes ``python -m jackrabbit_asyncio`` and
``python -m jackrabbit_threads`` accept exactly the same command line.
"""

from __future__ import annotations

import argparse
import math
import re

from jackrabbit_core.config import MIN_MEMORY_BUDGET, Config, __version__
from jackrabbit_core.exceptions import ConfigError

from .devcerts import dev_paths
from .relay import address_of


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


#: What a size's suffix multiplies it by (binary units; ``M`` and ``MiB`` mean the same).
_UNITS = {
    "": 1,
    **dict.fromkeys(("k", "kib"), 1 << 10),
    **dict.fromkeys(("m", "mib"), 1 << 20),
    **dict.fromkeys(("g", "gib"), 1 << 30),
}


def _memory(text: str) -> int:
    """A size like ``64MiB``, ``64M`` or ``67108864`` (bytes), at least ``MIN_MEMORY_BUDGET``."""
    number = text.rstrip("KkMmGgIiBb")
    unit = _UNITS.get(text[len(number) :].lower())
    try:
        value = float(number) * unit if unit is not None else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a size (like 64MiB): {text!r}")
    if value < MIN_MEMORY_BUDGET:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_MEMORY_BUDGET >> 20}MiB: {text!r}")
    return int(value)


def _origin(text: str) -> str:
    """A web origin as browsers send it in ``Origin``: ``SCHEME://HOST[:PORT]``, no path."""
    scheme, sep, rest = text.partition("://")
    if not sep or not scheme or not rest or "/" in rest.rstrip("/"):
        raise argparse.ArgumentTypeError(
            f"not a web origin (expected https://HOST[:PORT]): {text!r}"
        )
    return text


class RaisingParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises ``ConfigError`` instead of exiting the process
    (``--help`` and ``--version`` still print and exit 0)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The server's argument parser (``CONTRACT.md`` §1), for ``--help`` and for parsing."""
    defaults = Config()
    parser = RaisingParser(
        prog=prog,
        description="jackrabbit: a persistent message queue over secure WebSockets.\n"
        "This runs the server; the add and take commands talk to one.",
        epilog=(
            "commands:\n"
            f"  {prog} add [MESSAGE ...]\n"
            "      add messages (the arguments, or stdin lines); print each seq once stored\n"
            f"  {prog} take\n"
            "      print messages as they come, acknowledging each\n"
            f"  {prog} token NAME --allow ACTION:PATTERN ...\n"
            "      make a token for the --auth file\n"
            f"  (see {prog} add --help, {prog} take --help, {prog} token --help)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--version", action="version", version=f"jackrabbit {__version__}")
    add("--host", default=defaults.host, help="address to listen on (default %(default)s)")
    add(
        "--port",
        type=_port,
        default=defaults.port,
        help="TCP port; 0 picks a free one (default %(default)s)",
    )
    add(
        "--db",
        "--save-path",
        dest="db",
        default=defaults.db,
        help="RocksDB directory (default %(default)s)",
    )
    add(
        "--chain-cert",
        "--chain_cert",
        "--cert",
        dest="chain_cert",
        default=defaults.chain_cert,
        help="PEM certificate chain (default %(default)s)",
    )
    add(
        "--private-key",
        "--private_key",
        "--cert-path",
        dest="private_key",
        default=defaults.private_key,
        help="PEM private key (default %(default)s)",
    )
    add(
        "--dev",
        action="store_true",
        help="self-signed certificates for localhost, kept under the db directory; "
        "binds 127.0.0.1:8443 unless --host/--port are given",
    )
    add(
        "--fsync",
        choices=("always", "never"),
        default=defaults.fsync,
        help="fsync each batch before confirming adds (default %(default)s)",
    )
    add(
        "--max-message-bytes",
        type=_positive_int,
        default=defaults.max_message_bytes,
        help="largest message accepted, in bytes (default %(default)s)",
    )
    add(
        "--heartbeat",
        type=_seconds,
        default=defaults.heartbeat,
        help="ping interval in seconds; a peer silent for two is dropped (default %(default)s)",
    )
    add(
        "--max-connections",
        type=_positive_int,
        default=defaults.max_connections,
        help="connections beyond this get HTTP 503 (default %(default)s)",
    )
    add(
        "--handover-timeout",
        type=_seconds,
        default=defaults.handover_timeout,
        help="seconds a planned handover waits for acks (default %(default)s)",
    )
    add(
        "--memory-budget",
        type=_memory,
        default=defaults.memory_budget,
        metavar="SIZE",
        help="bytes of data the server may hold in flight (store buffers, unconfirmed adds, "
        "deliveries, socket buffers), split as the README says; K, M, G or KiB, MiB, GiB "
        "(default 64MiB)",
    )
    add(
        "--auth",
        metavar="FILE",
        default=None,
        help="TOML file of principals and their grants; without it anyone may do anything "
        "(docs/security.md); SIGHUP re-reads it",
    )
    add(
        "--client-ca",
        metavar="FILE",
        default=None,
        help="PEM CA that client certificates are verified against (needs --auth)",
    )
    add(
        "--allow-origin",
        metavar="ORIGIN",
        type=_origin,
        action="append",
        default=[],
        help="a web origin (https://app.example.com) whose pages may open WebSockets; "
        "repeatable; when given, an upgrade with another Origin header gets 403",
    )
    cluster = parser.add_argument_group("cluster mode (docs/cluster.md)")
    cluster.add_argument(
        "--cluster",
        metavar="DSN",
        help="PostgreSQL connection string: store everything there (instead of --db) and "
        "serve queues with every node started with the same DSN",
    )
    cluster.add_argument(
        "--node-name",
        type=_node_name,
        help="this node's name in the cluster (default HOST:PORT)",
    )
    cluster.add_argument(
        "--advertise",
        metavar="wss://HOST:PORT",
        help="how the other nodes reach this one (default wss:// and the listening address)",
    )
    cluster.add_argument(
        "--lease",
        type=_seconds,
        default=defaults.lease,
        help="seconds a node holds its queues without renewing (default %(default)s)",
    )
    return parser


#: A node name: what may appear in a header and a log line without quoting.
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\[\]-]{0,199}")


def _node_name(text: str) -> str:
    if not _NODE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"letters, digits and . _ : - [ ] only, at most 200: {text!r}"
        )
    return text


def parse_args(argv: list[str], prog: str = "jackrabbit") -> Config:
    """Turn a command line into a ``Config``; raises ``ConfigError`` with a one-line message.

    ``--dev`` changes the defaults of ``--host`` and ``--port`` to 127.0.0.1:8443 (only those
    not given) and points the certificate paths at the db directory's ``dev-certs``.
    """
    parser = build_parser(prog)
    ns = parser.parse_args(argv)
    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    host, port = ns.host, ns.port
    chain_cert, private_key = ns.chain_cert, ns.private_key
    if ns.dev:
        if "--host" not in given:
            host = "127.0.0.1"
        if "--port" not in given:
            port = 8443
        paths = dev_paths(ns.db)
        chain_cert, private_key = paths.chain, paths.key
    if ns.cluster is None:
        alone = [flag for flag in ("--node-name", "--advertise", "--lease") if flag in given]
        if alone:
            raise ConfigError(f"{alone[0]} needs --cluster")
    elif ns.advertise is not None:
        address_of(ns.advertise)  # a one-line error now rather than at start-up
    return Config(
        host=host,
        port=port,
        db=ns.db,
        chain_cert=chain_cert,
        private_key=private_key,
        dev=ns.dev,
        fsync=ns.fsync,
        max_message_bytes=ns.max_message_bytes,
        heartbeat=ns.heartbeat,
        max_connections=ns.max_connections,
        handover_timeout=ns.handover_timeout,
        memory_budget=ns.memory_budget,
        auth=ns.auth,
        client_ca=ns.client_ca,
        allow_origins=tuple(ns.allow_origin),
        cluster=ns.cluster,
        node_name=ns.node_name,
        advertise=ns.advertise,
        lease=ns.lease,
    )
