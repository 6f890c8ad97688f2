"""What both shells do the same way on the host, outside the sans-I/O core: the TLS policy
(``tls``) and the rules for the files a server creates (``files``).

The core (``jackrabbit_core``) may not open sockets or build ``ssl`` contexts; the shells must
not copy code between them. This package is where the host-facing code they share lives.
"""
