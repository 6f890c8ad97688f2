"""The other side of an A/B run: a git ref of this repository exported to a directory, so a
jackrabbit shell can run from it beside this checkout's in the same interleaved rounds.

``git archive`` (not a worktree) so nothing is registered in the repository and the copy
goes away with the run's temporary directory, also on Ctrl-C. Only committed files are in
it, as in any checkout of the ref.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class CheckoutError(RuntimeError):
    """The ref could not be resolved or exported; the message says why."""


def resolve(ref: str, repo: Path = ROOT) -> str:
    """The commit id ``ref`` names in ``repo``."""
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet",
                           f"{ref}^{{commit}}"], capture_output=True, text=True, timeout=30,
                          check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise CheckoutError(f"{ref!r} is not a commit in {repo}")
    return done.stdout.strip()


def export(ref: str, dest: Path, repo: Path = ROOT) -> str:
    """Write the tree of ``ref`` into ``dest`` (created); return its commit id."""
    commit = resolve(ref, repo)
    dest.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen(["git", "-C", str(repo), "archive", "--format=tar", commit],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            tar.extractall(dest, filter="data")
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise CheckoutError(f"git archive {ref} failed: {err.strip()[:200]}")
    return commit
