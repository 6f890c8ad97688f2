"""The command line and the process's life (CONTRACT §1).

- When ready the server prints (and flushes) ``jackrabbit listening on wss://HOST:PORT``
  with the real port when ``--port 0``. The suite never runs servers with ``-u``: a ready
  line stuck in a buffer is a failure to start.
- ``--flag value`` and ``--flag=value`` both work, and the original spellings
  (``--save-path``, ``--chain_cert``, ``--cert``, ``--private_key``, ``--cert-path``) too.
- ``--dev`` makes certificates under the db directory and prints the CA file's path.
- SIGTERM and SIGINT end the server cleanly: exit 0, clients closed with 1001, confirmed
  writes (even with ``--fsync never``) and processed acks kept.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from .client import Client, http
from .conftest import Spawner
from .harness import READY_LINE, Certificates, ExternalServer


def test_ready_line_shows_the_real_port(spawn: Spawner) -> None:
    """The first stdout line is the ready line, with the port the server really bound."""
    server = spawn()
    assert READY_LINE.match(server.stdout_lines[0]), server.stdout_lines
    assert server.stdout_lines[0] == f"jackrabbit listening on wss://127.0.0.1:{server.port}"
    assert http(server, "/healthz").status == 200


@pytest.mark.parametrize(
    "spelling",
    ["equals", "original-aliases", "other-aliases"],
)
def test_flag_spellings(
    spawn: Spawner,
    certs: Certificates,
    connect: Callable[..., Client],
    queue: str,
    spelling: str,
) -> None:
    """Every spelling of the db and certificate flags points at the same files: a message
    added under one spelling is there after a restart with the canonical one."""
    server = spawn(start=False)
    db, chain, key = str(server.db), str(certs.chain), str(certs.key)
    server.flags = {
        "equals": ["--host=127.0.0.1", "--port=0", f"--db={db}",
                   f"--chain-cert={chain}", f"--private-key={key}"],
        "original-aliases": ["--host", "127.0.0.1", "--port", "0", "--save-path", db,
                             "--chain_cert", chain, "--private_key", key],
        "other-aliases": ["--host", "127.0.0.1", "--port", "0", f"--save-path={db}",
                          f"--cert={chain}", f"--cert-path={key}"],
    }[spelling]  # fmt: skip
    server.start()
    assert connect(server, queue).add(b"kept")["seq"] == 1
    server.stop()
    server.flags = None  # the canonical --db, --chain-cert, --private-key
    server.start()
    consumer = connect(server, queue)
    consumer.take()
    assert consumer.expect("message")["data"] == b"kept"


def test_dev_prints_the_ca_path(spawn: Spawner, connect: Callable[..., Client], queue: str) -> None:
    """``--dev`` makes its own certificates and prints the CA file's path, which a client
    can then trust to connect (to 127.0.0.1 and to localhost)."""
    server = spawn(start=False)
    server.flags = ["--dev", "--host", "127.0.0.1", "--port", "0", "--db", str(server.db)]
    server.start()
    ca = None
    line: str | None = "\n".join(server.stdout_lines)
    while ca is None:
        assert line is not None, f"no CA path on stdout: {server.stdout_lines!r}"
        ca = _existing_file(line, server.workdir)
        if ca is None:
            line = server.next_stdout_line(timeout=5)  # TimeoutError if never printed
    target = ExternalServer(f"wss://127.0.0.1:{server.port}", ca)
    assert connect(target, queue).add(b"dev")["seq"] == 1
    by_name = ExternalServer(f"wss://localhost:{server.port}", ca)
    assert http(by_name, "/healthz").status == 200


def _existing_file(text: str, cwd: Path) -> Path | None:
    """The first word of ``text`` that names an existing file, preferring a CA's name."""
    found = []
    for word in text.split():
        word = word.strip("'\",;:()[]")
        path = Path(word) if Path(word).is_absolute() else cwd / word
        if word and path.is_file():
            found.append(path)
    found.sort(key=lambda p: "ca" not in p.name.lower())
    return found[0] if found else None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_shuts_down_cleanly(
    spawn: Spawner, connect: Callable[..., Client], queue: str, signum: int
) -> None:
    """On SIGTERM/SIGINT every client is closed with 1001, the process exits 0, and after a
    restart (``--fsync never``, so only a clean shutdown keeps them) every confirmed add is
    there and delivery resumes after the last processed ack."""
    server = spawn("--fsync", "never")
    producer = connect(server, queue)
    for n in range(1, 31):
        producer.send({"command": "add", "data": b"m%d" % n})
    assert sorted(producer.expect("added")["seq"] for _ in range(30)) == list(range(1, 31))
    active, standby = connect(server, queue), connect(server, queue)
    active.take(prefetch=10)
    standby.take(role="standby")
    assert [m["seq"] for m in active.messages(10)] == list(range(1, 11))
    active.ack(10)
    # A reply on the same connection proves the ack was processed before the signal; the
    # deliveries the ack let through may come before it.
    active.send({"command": "add", "data": b"m31", "req": "fence"})
    fence, _ = active.until("added", req="fence")
    assert fence["seq"] == 31
    bystander = connect(server, "other-" + queue[:100])
    server.send_signal(signum)
    for client in (producer, active, standby, bystander):
        closed = client.expect_close(timeout=10)
        assert closed.code == 1001, (closed.code, closed.reason)
    assert server.wait(timeout=10) == 0
    server.start()
    consumer = connect(server, queue)
    consumer.take()
    got = consumer.messages(21)
    assert [m["seq"] for m in got] == list(range(11, 32))
    assert [m["data"] for m in got] == [b"m%d" % n for n in range(11, 32)]
    consumer.expect_quiet()
