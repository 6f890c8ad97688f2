"""Progress lines on stderr while the run goes: elapsed time, system, step, outcome."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self.system = ""

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.t0
        prefix = f"[{int(elapsed // 60):02d}:{elapsed % 60:04.1f}]"
        who = f" {self.system}:" if self.system else ""
        self.stream.write(f"{prefix}{who} {text}\n")
        self.stream.flush()
