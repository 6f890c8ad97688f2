"""What both shells do the same way on the host, outside the sans-I/O core: the RocksDB store
adapter (``rocks``), start-up steps (``startup``), the reads the core asks for (``reads``), the
TLS policy (``tls``) and the rules for the files a server creates (``files``).

The core (``jackrabbit_core``) decides; a shell (``jackrabbit_asyncio``, ``jackrabbit_threads``)
moves bytes and time; this package holds the rest they have in common, once.
"""
