"""jackrabbit's threads shell: blocking reads and ``ssl``, a reader thread per connection.

``python -m jackrabbit_threads`` runs the server (same flags and behaviour as
``python -m jackrabbit_asyncio``); ``Client`` is the blocking client; its
exceptions (``ClientError``, ``AccessDenied``, ``ConnectionLost``) are the core's, shared with
``jackrabbit_asyncio``.
"""

from .client import AccessDenied as AccessDenied
from .client import Client as Client
from .client import ClientError as ClientError
from .client import ConnectionLost as ConnectionLost
from .client import Message as Message
from .client import Role as Role
from .server import Server as Server
from .server import serve as serve
