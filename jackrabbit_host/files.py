"""The files a server creates are private to its user, whatever the user's umask.

Messages sit in the RocksDB directory in the clear. The store makes that directory 0700 (and
tightens files an earlier version left readable), but RocksDB creates files all its life
(table files, write-ahead logs, manifests, its info log) with modes only the process umask
governs, so the server program also runs under umask 077: its files are 0600, its directories
0700. The ``--dev`` certificates under the same directory get the same treatment.
"""

from __future__ import annotations

import os
from typing import Final

#: The umask a server program runs under: files 0600, directories 0700.
PRIVATE_UMASK: Final = 0o077


def use_private_umask() -> None:
    """Make every file this process creates from now on private to its user.

    Process-wide, so only a server program calls it (at start-up), never the library.
    """
    os.umask(PRIVATE_UMASK)
