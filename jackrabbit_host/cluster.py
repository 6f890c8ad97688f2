"""This node's part in a cluster (protocol §10, ``docs/cluster.md``): its lease, the queues it
takes, and the core's questions about where a queue is served.

Two threads, each with its own database connection (``jackrabbit_host.postgres``), so a slow
takeover never delays a renewal:

- the **lease keeper** renews the node's lease every third of ``--lease`` and tells the core
  how long it now runs (``Server.renewed``), measured from *before* the renewal was sent, less
  a margin for a late timer: the core stops serving every queue at that deadline on its own,
  even if this thread hangs, and the database's lease ends later than that. A renewal that
  finds the lease over tells the core (``lease_lost``) and registers the node again.
- the **locator** answers ``Locate`` (take the queue, or say who serves it) and
  ``ClusterStatus`` (``GET /api/cluster``).

Answers reach the core through ``post``, which the shell gives: it runs a core call on the
event loop or under the core lock, then carries out the actions.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Final

from jackrabbit_core import ClusterStatus, ConfigError, Locate, Relay, Server, StoreError

from . import relay
from .postgres import Acquired, LeaseLost, Node, PgStore

__all__ = ["ClusterNode", "Post", "new_node"]

log = logging.getLogger("jackrabbit.cluster")

#: A core call to run where the core may be called: ``call(server, now)``.
CoreCall = Callable[[Server, float], None]
#: How a host thread hands the shell a core call.
Post = Callable[[CoreCall], None]

#: Renewals per lease period.
RENEWALS_PER_LEASE: Final = 3
#: The part of the lease the core gives up early: its timer may fire late on a busy machine.
MARGIN: Final = 0.2


class ClusterNode:
    """The lease keeper and the locator of one node (see the module docstring).

    ``join`` registers the node (waiting out a previous process of the same name), ``start``
    starts the threads, ``carry_out`` takes the core's questions, ``close`` stops the threads;
    the store's own ``close`` then hands the queues over.
    """

    def __init__(
        self, store: PgStore, node: Node, lease: float, link_context: ssl.SSLContext
    ) -> None:
        self._store = store
        self.node = node
        #: The TLS client context of relay links to other nodes.
        self.link_context = link_context
        self._lease = lease
        self._post: Post | None = None
        self._jobs: queue.SimpleQueue[Locate | ClusterStatus | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._keep_lease, name="jackrabbit-lease", daemon=True),
            threading.Thread(target=self._locate_loop, name="jackrabbit-locator", daemon=True),
        ]

    def join(self) -> None:
        """Enter the registry. A node of the same name that is still alive by the database
        (a previous process killed moments ago) is waited out for one lease; one that keeps
        renewing is an error (``ConfigError``: two nodes must not share a name)."""
        deadline = time.monotonic() + self._lease + 1.0
        while True:
            left = self._store.register(self.node, self._lease)
            if left is None:
                return
            if time.monotonic() + left > deadline:
                raise ConfigError(
                    f"--node-name {self.node.name} is in use by a running node; pick another"
                )
            log.warning("waiting %.1fs for the last process of node %s", left, self.node.name)
            time.sleep(min(left + 0.05, self._lease))

    def start(self, post: Post) -> None:
        """Start the threads; their answers reach the core through ``post``."""
        self._post = post
        self._store.on_fenced = self.fenced
        for thread in self._threads:
            thread.start()

    def carry_out(self, action: Locate | ClusterStatus) -> None:
        """Take a question of the core; it is answered later, through ``post``."""
        self._jobs.put(action)

    def relay_head(self, action: Relay, peer: str) -> bytes:
        """What a relay of ``action`` sends the owner first: the request with this node's
        proof, then the bytes the client sent after it (``jackrabbit_host.relay``)."""
        head = relay.request_head(
            action.request,
            node=self.node.name,
            peer=peer,
            secret=self._store.secret,
            now=time.time(),
        )
        return head + action.early

    def deadline(self, started: float) -> float:
        """Until when the core may serve on a lease renewed by a request sent at ``started``."""
        return started + self._lease * (1 - MARGIN)

    def fenced(self, queues: set[str]) -> None:
        """The database refused a write for ``queues``: the core must stop serving them."""
        for name in queues:
            self._call(_releaser(name))

    def close(self) -> None:
        """Stop both threads (within a statement's timeout)."""
        self._stop.set()
        self._jobs.put(None)
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(timeout=15.0)

    # -- the threads --------------------------------------------------------------------------

    def _call(self, call: CoreCall) -> None:
        post = self._post
        if post is not None:
            post(call)

    def _keep_lease(self) -> None:
        period = self._lease / RENEWALS_PER_LEASE
        failing = False
        while not self._stop.wait(period):
            started = time.monotonic()
            try:
                try:
                    self._store.renew(self._lease)
                except LeaseLost as exc:
                    log.warning("%s; the node releases its queues and registers again", exc)
                    self._call(_lease_lost(str(exc)))
                    self._store.generations.clear()
                    if self._store.register(self.node, self._lease) is not None:
                        continue  # the name is taken meanwhile: try again next period
                    started = time.monotonic()  # a new lease from here
            except StoreError as exc:
                if not failing:
                    log.error("cannot renew the node's lease: %s", exc)
                failing = True
                continue
            if failing:
                log.warning("the node's lease is renewed again")
                failing = False
            self._call(_renewed(self.deadline(started)))

    def _locate_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if isinstance(job, Locate):
                self._locate(job.queue)
            else:
                self._status(job.ticket)

    def _locate(self, name: str) -> None:
        started = time.monotonic()
        try:
            found = self._store.acquire(name, self._lease)
        except StoreError as exc:
            reason = str(exc)
            log.error("cannot locate queue %s: %s", name, reason)
            self._call(lambda server, now: server.locate_failed(name, reason, now))
            return
        if isinstance(found, Acquired):
            until = self.deadline(started)
            record = found.record
            log.info("took queue %s (generation %d)", name, found.generation)
            self._call(lambda server, now: server.adopt(record, until, now))
        else:
            node, address = found.node, found.advertise
            self._call(lambda server, now: server.located(name, node, address, now))

    def _status(self, ticket: int) -> None:
        try:
            nodes = self._store.describe()
        except StoreError as exc:
            log.error("cannot describe the cluster: %s", exc)
            body = None
        else:
            body = json.dumps({"node": self.node.name, "nodes": nodes}).encode()
        self._call(lambda server, now: server.cluster_status(ticket, body, now))


_FENCED: Final = "fenced off: queue moved to another node; reconnect"


def _lease_lost(reason: str) -> CoreCall:
    def lease_lost(server: Server, now: float) -> None:
        server.lease_lost(reason, now)

    return lease_lost


def _renewed(until: float) -> CoreCall:
    def renewed(server: Server, now: float) -> None:
        server.renewed(until, now)

    return renewed


def _releaser(name: str) -> CoreCall:
    def release(server: Server, now: float) -> None:
        server.release(name, _FENCED, now)

    return release


def new_node(name: str, advertise: str) -> Node:
    """This process's identity in the registry: a fresh incarnation of node ``name``."""
    return Node(name, uuid.uuid4().hex, advertise)

