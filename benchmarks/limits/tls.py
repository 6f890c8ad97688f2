"""Raw TLS over loopback with Python's ``ssl``: a sink process reads, this process writes
100-byte records one by one (a message per TLS record, as a server writing each frame pays)
and then 64 KiB chunks (bulk bytes/s)."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import trustme

from . import Limit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sink(cert: str, key: str, connections: int) -> None:
    """Serve ``connections`` TLS connections in turn, reading each until EOF."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(60)
        print(listener.getsockname()[1], flush=True)
        for _ in range(connections):
            conn, _ = listener.accept()
            conn.settimeout(60)
            with ctx.wrap_socket(conn, server_side=True) as tls:
                total = 0
                while chunk := tls.recv(1 << 20):
                    total += len(chunk)
            print(total, flush=True)


def _send(ctx: ssl.SSLContext, port: int, size: int, seconds: float) -> tuple[int, float]:
    block = b"m" * size
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while sent < 50_000_000 and time.perf_counter() < deadline:
            for _ in range(100):
                tls.sendall(block)
            sent += 100
        elapsed = time.perf_counter() - t0
        with contextlib.suppress(OSError):
            tls.unwrap()
    return sent, elapsed


def measure(seconds: float) -> list[Limit]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="jr-bench-tls-") as tmp:
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        cert.private_key_and_cert_chain_pem.write_to_path(cert_path)
        cert.private_key_pem.write_to_path(key_path)
        proc = subprocess.Popen(
            [sys.executable, "-c",
             "import sys; from benchmarks.limits.tls import sink; "
             "sink(sys.argv[1], sys.argv[2], 2)", cert_path, key_path],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            ctx = ssl.create_default_context()
            ca.configure_trust(ctx)
            small, t_small = _send(ctx, port, 100, seconds)
            proc.stdout.readline()
            big, t_big = _send(ctx, port, 64 * 1024, seconds)
            proc.stdout.readline()
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [
        Limit("TLS loopback, one 100-byte record per write", small / t_small, "records/s",
              f"{small * 100 / t_small / 1e6:,.1f} MB/s"),
        Limit("TLS loopback, 64 KiB writes", big * 64 * 1024 / t_big / 1e6, "MB/s",
              compare=False),
    ]
