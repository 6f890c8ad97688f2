"""jackrabbit's threads shell: blocking reads and ``ssl``, a reader thread per connection.

``python -m jackrabbit_threads`` runs the server (same flags and behaviour as
``python -m jackrabbit_asyncio``); ``Client`` is the blocking client.
"""

from .client import Client, ClientError, ConnectionLost, Message, Role
from .server import Server, serve

__all__ = ["Client", "ClientError", "ConnectionLost", "Message", "Role", "Server", "serve"]
