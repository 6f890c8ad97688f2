"""Optional C speed-ups the shells hand to the core when they are installed.

Unmasking client frames (RFC 6455 §5.3) is the largest cost of a large message: the core's
pure-Python ``frames.unmask`` XORs big integers, well enough for small frames; the C
``apply_mask`` of the ``websockets`` package (the ``speedups`` extra) does 64 KiB in a few
microseconds. Only that one extension module is loaded, not the ``websockets`` package, which
would pull its own networking into the server process for nothing.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os

from jackrabbit_core.frames import Unmasker


def c_unmasker() -> Unmasker | None:
    """``websockets``' C ``apply_mask`` when it is installed, else None (the core then uses
    its pure-Python unmasker)."""
    package = importlib.util.find_spec("websockets")  # finds it without importing it
    folders = None if package is None else package.submodule_search_locations
    for folder in folders or ():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "speedups" + suffix)
            if not os.path.exists(path):
                continue
            spec = importlib.util.spec_from_file_location("websockets.speedups", path)
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            apply_mask: Unmasker = module.apply_mask
            return apply_mask
    return None
