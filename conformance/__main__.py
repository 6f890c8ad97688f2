"""``python -m conformance``: run the conformance suite.

    python -m conformance                                  # both shells, started here
    python -m conformance --shell threads                  # one shell
    python -m conformance --url wss://HOST:PORT --ca CA.pem  # any running server
    python -m conformance --url ... --ca ... -- -k failover -x   # extra pytest arguments

Against ``--url`` the scenarios that must start, restart, kill or read a server of their own
are skipped, each saying why. The exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="Check a jackrabbit server against the external contract.",
        epilog="Arguments after -- go to pytest.",
    )
    parser.add_argument("--url", help="a running server, wss://HOST:PORT")
    parser.add_argument("--ca", help="the CA file that signed its certificate (with --url)")
    parser.add_argument(
        "--shell",
        action="append",
        choices=("asyncio", "threads"),
        help="test only this shell (repeatable; default both; ignored with --url)",
    )
    args = sys.argv[1:] if argv is None else argv
    rest: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, rest = args[:cut], args[cut + 1 :]
    ns = parser.parse_args(args)
    if ns.url and not ns.ca:
        parser.error("--url needs --ca (the CA certificate to trust)")
    if ns.ca and not ns.url:
        parser.error("--ca goes with --url")
    if ns.url:
        os.environ["JACKRABBIT_URL"] = ns.url
        os.environ["JACKRABBIT_CA"] = str(Path(ns.ca).resolve())
    elif ns.shell:
        os.environ["JACKRABBIT_SHELLS"] = ",".join(ns.shell)

    import pytest

    return int(pytest.main([str(HERE), "-p", "no:cacheprovider", "-rfEs", *rest]))


if __name__ == "__main__":
    sys.exit(main())
