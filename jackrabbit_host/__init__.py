"""What both shells share that is not pure: the RocksDB store adapter and start-up steps.

The core (``jackrabbit_core``) decides; a shell (``jackrabbit_asyncio``, ``jackrabbit_threads``)
moves bytes and time; this package holds the rest they have in common, once.
"""
