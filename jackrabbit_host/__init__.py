"""What both shells do the same way on the host, outside the sans-I/O core: the program and
its command line (``program``, ``cli``, ``options``), start-up steps (``startup``), the RocksDB
store adapter (``rocks``) and the reads the core asks for (``reads``), the TLS policy
(``tls``), the listening sockets (``listeners``), who gets in before TLS (``admission``), the
other limits and timeouts around the core (``limits``; the limits on data in flight are the
``--memory-budget``'s shares, ``jackrabbit_core.config.Budget``), the rules for the files a
server creates (``files``), the ``--auth`` file, its reload on SIGHUP, the audit log and the
``token`` command (``access``, ``subjects``), and cluster mode: the PostgreSQL store
(``postgres``), the node's lease keeper and locator (``cluster``) and relays (``relay``).

The core (``jackrabbit_core``) decides; a shell (``jackrabbit_asyncio``, ``jackrabbit_threads``)
moves bytes and time; this package holds the rest they have in common, once.
"""
