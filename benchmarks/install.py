"""Bring in what a peer needs (a Debian package for its server, a pip package for its client),
or say plainly what is missing. Nothing here fails silently: every outcome is a line of text
that the run prints and the report keeps."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

POLICY_RC = Path("/usr/sbin/policy-rc.d")


@dataclass(frozen=True, slots=True)
class Need:
    """What one system needs: a server binary (from a Debian package) and client modules
    (from pip packages)."""

    binary: str | None = None
    debian: str | None = None
    modules: tuple[tuple[str, str], ...] = ()  # (import name, pip name)


def have_binary(name: str) -> bool:
    return shutil.which(name) is not None or Path(name).exists()


def have_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


class Installer:
    """Installs on demand, once per package; remembers what it could not get."""

    def __init__(self, allowed: bool, say: Callable[[str], None]) -> None:
        self.allowed = allowed
        self.say = say
        self._apt_updated = False

    def ensure(self, need: Need) -> list[str]:
        """Make ``need`` available if allowed; return what is still missing (empty = ready)."""
        missing: list[str] = []
        if need.binary and not have_binary(need.binary):
            if need.debian and self.allowed and self._apt_install(need.debian):
                pass
            if not have_binary(need.binary):
                missing.append(f"`{need.binary}` (Debian package `{need.debian}`)")
        for module, pip_name in need.modules:
            if not have_module(module):
                if self.allowed:
                    self._pip_install(pip_name)
                if not have_module(module):
                    missing.append(f"Python module `{module}` (pip package `{pip_name}`)")
        return missing

    def _apt_install(self, package: str) -> bool:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            self.say(f"cannot install {package}: apt-get needs root here")
            return False
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if not self._apt_updated:
            self.say("apt-get update ...")
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True,
                           timeout=600, check=False)
            self._apt_updated = True
        self.say(f"apt-get install -y {package} ...")
        # Debian's maintainer scripts would start the service system-wide (listening on all
        # addresses); a policy-rc.d that denies starts keeps that from happening.
        made_policy = False
        if not POLICY_RC.exists():
            POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
            POLICY_RC.chmod(0o755)
            made_policy = True
        try:
            done = subprocess.run(
                ["apt-get", "install", "-y", "-q", package],
                env=env, capture_output=True, text=True, timeout=900, check=False,
            )
        finally:
            if made_policy:
                POLICY_RC.unlink(missing_ok=True)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-3:])
            self.say(f"apt-get install {package} failed: {tail}")
            return False
        return True

    def _pip_install(self, package: str) -> None:
        self.say(f"pip install {package} ...")
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", package],
            capture_output=True, text=True, timeout=600, check=False,
        )
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-3:])
            self.say(f"pip install {package} failed: {tail}")
        importlib.invalidate_caches()
