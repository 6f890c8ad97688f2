"""jackrabbit's asyncio shell: one event loop, an ``asyncio.Protocol`` per connection.

``python -m jackrabbit_asyncio`` runs the server (same flags and behaviour as
``python -m jackrabbit_threads``); ``Client`` is the asyncio client; its
exceptions (``ClientError``, ``AccessDenied``, ``ConnectionLost``) are the core's, shared with
``jackrabbit_threads``.
"""

from .client import AccessDenied as AccessDenied
from .client import Client as Client
from .client import ClientError as ClientError
from .client import ConnectionLost as ConnectionLost
from .client import Message as Message
from .client import Role as Role
from .client import Subscription as Subscription
from .server import Server as Server
from .server import serve as serve
