"""How fast ``wsproto`` parses the frames a server receives (masked client frames holding a
msgpack ``add`` of 100 bytes), alone and with the msgpack decode."""

from __future__ import annotations

import time

import msgpack
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Message, Request

from . import Limit


def _pair() -> tuple[WSConnection, WSConnection]:
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="127.0.0.1", target="/")))
    for event in server.events():
        if isinstance(event, Request):
            client.receive_data(server.send(AcceptConnection()))
    list(client.events())
    return client, server


def measure(seconds: float, frames_per_blob: int = 20_000) -> list[Limit]:
    client, server = _pair()
    body = msgpack.packb({"command": "add", "data": b"x" * 100})
    blob = b"".join(client.send(Message(data=body)) for _ in range(frames_per_blob))
    # fed in 16 KiB pieces, the most plaintext one TLS record carries
    chunks = [blob[i:i + 16384] for i in range(0, len(blob), 16384)]
    out = []
    for decode in (False, True):
        n = 0
        unpack = msgpack.unpackb
        partial = b""
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while time.perf_counter() < deadline and n < 20_000_000:
            for chunk in chunks:
                server.receive_data(chunk)
                for event in server.events():
                    if isinstance(event, BytesMessage):
                        if not event.message_finished:
                            partial += event.data
                            continue
                        n += 1
                        if decode:
                            unpack(partial + event.data if partial else event.data)
                        partial = b""
        rate = n / (time.perf_counter() - t0)
        name = "wsproto server-side parse of 100 B adds" + (" + msgpack decode" if decode
                                                            else "")
        out.append(Limit(name, rate, "frames/s"))
    return out
