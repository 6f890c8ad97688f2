"""jackrabbit's asyncio shell: one event loop, an ``asyncio.Protocol`` per connection.

``python -m jackrabbit_asyncio`` runs the server (same flags and behaviour as
``python -m jackrabbit_threads``); ``Client`` is the asyncio client.
"""

from .client import Client, ClientError, ConnectionLost, Message, Subscription
from .server import Server, serve

__all__ = ["Client", "ClientError", "ConnectionLost", "Message", "Server", "Subscription", "serve"]
