"""The listening sockets of a server, the same for both shells."""

from __future__ import annotations

import socket

from jackrabbit_core.config import Config
from jackrabbit_core.exceptions import ConfigError

from .cli import bind_error
from .limits import BACKLOG


def listen(config: Config) -> list[socket.socket]:
    """Non-blocking listening sockets for every address ``--host`` resolves to (``localhost``:
    127.0.0.1 and ::1), all on one port (the first one's, with ``--port 0``); an address
    family the host cannot open (IPv6 switched off) is skipped. Raises ``ConfigError`` with
    a one-line message (``cli.bind_error``)."""
    try:
        return _listen(config.host, config.port)
    except OSError as exc:
        raise ConfigError(bind_error(config, exc)) from None


def _listen(host: str, port: int) -> list[socket.socket]:
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listeners: list[socket.socket] = []
    unusable: OSError | None = None
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:
                unusable = exc
                continue
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(listeners) > 1:
                address = (address[0], listeners[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
        if not listeners:
            raise unusable or OSError(f"no address to listen on for {host!r}")
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners
