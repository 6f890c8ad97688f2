"""What both shells do the same way on the host, outside the sans-I/O core: the program and
its command line (``program``, ``cli``, ``options``), start-up steps (``startup``), the RocksDB
store adapter (``rocks``) and the reads the core asks for (``reads``), the TLS policy
(``tls``), the listening sockets (``listeners``), who gets in before TLS (``admission``), the
other limits and timeouts around the core (``limits``; the limits on data in flight are the
``--memory-budget``'s shares, ``jackrabbit_core.config.Budget``) and the rules for the files a
server creates (``files``).

The core (``jackrabbit_core``) decides; a shell (``jackrabbit_asyncio``, ``jackrabbit_threads``)
moves bytes and time; this package holds the rest they have in common, once.
"""
