"""The servers under test, one module each. Every peer listens on 127.0.0.1 only, keeps its
data and config in a temporary directory of its own, and is stopped at the end of its turn
(its whole process group), leaving nothing behind."""

from __future__ import annotations

from .base import Peer
from .jackrabbit import Jackrabbit
from .nats import NatsJetStream
from .rabbitmq import RabbitMQ
from .redis import RedisStreams

__all__ = ["Jackrabbit", "NatsJetStream", "Peer", "RabbitMQ", "RedisStreams"]
