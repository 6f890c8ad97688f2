"""Who may do what on which queue (protocol §11): grants, principals and the access policy.

Values and decisions only, no I/O: the host reads the ``--auth`` file
(``jackrabbit_host.access``) and hands the core an ``AccessPolicy``. The front door asks it who
a request comes from (``identify``) and what that caller may do on a queue; the facade caches
the answer per connection and checks every command against it with one set lookup.

- A **grant** is ``ACTION:PATTERN``: ``produce`` (add), ``consume`` (take, ack, handover,
  reject), ``read`` (the ``read`` command) or ``admin`` (``/metrics`` and the admin
  endpoints), on the queues whose name ``PATTERN`` matches, ``*`` standing for any run of
  characters (protocol §11.2).
- A **principal** is a name with grants, reached by a bearer token (only its SHA-256 is kept)
  and/or the subject of a client certificate the TLS layer verified (protocol §11.3).
- The **anonymous** principal holds what a connection without credentials may do; everyone
  may do that, so a principal's actions on a queue include the anonymous ones.

Tokens are compared in constant time: the SHA-256 digest of the one presented against every
principal's digest with ``hmac.compare_digest``, without stopping at a match.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from .http1 import Headers

__all__ = [
    "ACTIONS",
    "ANONYMOUS",
    "BEARER_PREFIX",
    "EVERYTHING",
    "NOTHING",
    "OPEN",
    "REASONS",
    "AccessPolicy",
    "Action",
    "Audit",
    "Caller",
    "Denial",
    "Failure",
    "Grant",
    "Principal",
    "Reason",
    "pattern_matches",
    "token_digest",
]

Action = Literal["produce", "consume", "read", "admin"]
ACTIONS: Final[tuple[Action, ...]] = ("produce", "consume", "read", "admin")

#: Every subset of ``ACTIONS``, made once: the sets a connection caches are these objects,
#: shared, so caching one per connection costs a pointer (protocol §11.5).
_SUBSETS: Final[dict[frozenset[Action], frozenset[Action]]] = {
    subset: subset
    for size in range(len(ACTIONS) + 1)
    for subset in map(frozenset, itertools.combinations(ACTIONS, size))
}
EVERYTHING: Final = _SUBSETS[frozenset(ACTIONS)]
NOTHING: Final = _SUBSETS[frozenset()]

#: A browser cannot set headers on a WebSocket: it offers its token as the subprotocol
#: ``jackrabbit.bearer.TOKEN`` next to ``jackrabbit.v1`` (protocol §11.3).
BEARER_PREFIX: Final = "jackrabbit.bearer."
#: The name the anonymous principal goes by in logs; no principal in the file may take it.
ANONYMOUS: Final = "anonymous"
#: A grant's pattern: a queue name's characters and ``*``, at most this long.
MAX_PATTERN_CHARS: Final = 256
_PATTERN: Final = re.compile(rf"[A-Za-z0-9._*-]{{1,{MAX_PATTERN_CHARS}}}")

#: Why a request or a command was refused; each is a label of
#: ``jackrabbit_auth_failures_total`` (protocol §11.6).
Reason = Literal[
    "invalid_credentials",  # a token that matches no principal, or a malformed one: 401
    "no_credentials",  # none given, and anonymous may do nothing there: 401
    "no_grant",  # a known principal with no grant there: 403
    "origin",  # an upgrade from a web page whose Origin is not allowed: 403
    "forbidden",  # a command whose action the connection lacks
    "revoked",  # an open connection closed by a reload that took its grant away
]
REASONS: Final[tuple[Reason, ...]] = (
    "invalid_credentials",
    "no_credentials",
    "no_grant",
    "origin",
    "forbidden",
    "revoked",
)


def pattern_matches(pattern: str, name: str) -> bool:
    """Whether ``name`` matches ``pattern``, where ``*`` matches any run of characters
    (the empty one too) and every other character matches itself.

    Linear in practice and O(len(pattern) * len(name)) at worst, with no backtracking blow-up:
    on a mismatch it resumes just after the last ``*``, one character further into the name.
    """
    p = n = 0
    star = -1  # index in pattern just after the last '*' seen
    mark = 0  # where in name that '*' started to match
    while n < len(name):
        if p < len(pattern) and pattern[p] == "*":
            star, mark = p + 1, n
            p += 1
        elif p < len(pattern) and pattern[p] == name[n]:
            p += 1
            n += 1
        elif star >= 0:
            mark += 1
            p, n = star, mark
        else:
            return False
    return all(c == "*" for c in pattern[p:])


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission to do ``action`` on the queues ``pattern`` matches (protocol §11.2)."""

    action: Action
    pattern: str

    @classmethod
    def parse(cls, text: str) -> Grant:
        """``ACTION:PATTERN``; raises ``ValueError`` saying what is wrong."""
        action, colon, pattern = text.partition(":")
        if not colon:
            raise ValueError(f"grant {text!r} is not ACTION:PATTERN")
        if action not in ACTIONS:
            raise ValueError(f"grant {text!r}: unknown action {action!r} (one of {ACTIONS})")
        if not _PATTERN.fullmatch(pattern):
            raise ValueError(
                f"grant {text!r}: a pattern is 1 to {MAX_PATTERN_CHARS} of the characters of "
                "queue names (letters, digits, '.', '_', '-') and '*' for any run of them"
            )
        return cls(action, pattern)

    def covers(self, queue: str) -> bool:
        """This grant applies to ``queue``."""
        return pattern_matches(self.pattern, queue)

    def __str__(self) -> str:
        return f"{self.action}:{self.pattern}"


@dataclass(frozen=True, slots=True)
class Principal:
    """Someone the server knows: a name (shown in logs, never a secret) and its grants."""

    name: str
    grants: tuple[Grant, ...]
    #: The SHA-256 digest (32 bytes) of its token, if it has one.
    token_sha256: bytes | None = None
    #: The subject of its client certificate, in ``jackrabbit_host.subjects`` form.
    subject: str | None = None

    def actions_on(self, queue: str) -> frozenset[Action]:
        """What its own grants allow on ``queue`` (one of the shared subsets)."""
        return _SUBSETS[frozenset(g.action for g in self.grants if g.covers(queue))]

    def may_anywhere(self, action: Action) -> bool:
        """It holds ``action`` on at least one pattern (``/metrics`` needs ``admin`` so)."""
        return any(g.action == action for g in self.grants)


@dataclass(frozen=True, slots=True)
class Denial:
    """A refusal, for the host to log (protocol §11.6): where from, who, why. It never holds
    a token: only the name of the principal a token or certificate named."""

    reason: Reason
    address: str
    principal: str | None
    queue: str | None
    message: str


#: Where the core reports each ``Denial`` (the host logs it).
Audit = Callable[[Denial], None]


def token_digest(token: bytes) -> bytes:
    """The SHA-256 digest of a token's bytes (``token_sha256`` is its hex, protocol §11.3)."""
    return hashlib.sha256(token).digest()


@dataclass(frozen=True, slots=True)
class Failure:
    """A request refused: the status, why (for ``/metrics`` and the log) and what to say."""

    status: int
    reason: Reason
    message: str
    #: The principal the credentials named, when they named one.
    principal: str | None = None

    @property
    def headers(self) -> Headers:
        """A 401 says how to authenticate (RFC 6750 §3)."""
        if self.status != 401:
            return ()
        if self.reason == "invalid_credentials":
            return ((b"www-authenticate", b'Bearer realm="jackrabbit", error="invalid_token"'),)
        return ((b"www-authenticate", b'Bearer realm="jackrabbit"'),)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from, as far as the policy that identified it goes."""

    policy: AccessPolicy
    principal: Principal
    #: The digest of the token it presented (to find its principal again after a reload).
    token: bytes | None

    @property
    def name(self) -> str:
        return self.principal.name

    @property
    def anonymous(self) -> bool:
        return self.principal is self.policy.anonymous

    def actions_on(self, queue: str) -> frozenset[Action]:
        """What it may do on ``queue``: its grants and the anonymous ones."""
        own = self.principal.actions_on(queue)
        if self.anonymous:
            return own
        return _SUBSETS[own | self.policy.anonymous.actions_on(queue)]

    def may(self, action: Action, queue: str) -> bool:
        """May it do ``action`` on ``queue``? What the admin endpoints ask for each queue."""
        return action in self.actions_on(queue)

    def may_anywhere(self, action: Action) -> bool:
        """Does it hold ``action`` on some queue (``/metrics`` needs ``admin`` so)?"""
        return self.principal.may_anywhere(action) or self.policy.anonymous.may_anywhere(action)


class AccessPolicy:
    """The principals of an ``--auth`` file and the anonymous grants: an immutable value.

    Raises ``ValueError`` when two principals share a name, a token or a subject, or one is
    named ``anonymous``: each credential must name one principal.
    """

    __slots__ = ("_by_subject", "_tokens", "anonymous", "principals")

    def __init__(self, principals: Sequence[Principal], anonymous: Iterable[Grant] = ()) -> None:
        self.principals = tuple(principals)
        self.anonymous = Principal(ANONYMOUS, tuple(anonymous))
        names: set[str] = set()
        tokens: list[tuple[bytes, Principal]] = []
        by_subject: dict[str, Principal] = {}
        for principal in self.principals:
            if principal.name in names or principal.name == ANONYMOUS:
                raise ValueError(f"principal name {principal.name!r} is used twice or reserved")
            names.add(principal.name)
            digest = principal.token_sha256
            if digest is not None:
                if len(digest) != 32 or any(digest == d for d, _ in tokens):
                    raise ValueError(f"principal {principal.name!r}: a token must be unique")
                tokens.append((digest, principal))
            if principal.subject is not None:
                if principal.subject in by_subject:
                    raise ValueError(f"principal {principal.name!r}: a subject must be unique")
                by_subject[principal.subject] = principal
        self._tokens = tuple(tokens)
        self._by_subject = by_subject

    def by_token(self, digest: bytes) -> Principal | None:
        """The principal whose token has this digest; the time taken does not depend on
        which one matches, or on how much of a digest does."""
        found = None
        for known, principal in self._tokens:
            if hmac.compare_digest(known, digest):
                found = principal
        return found

    def identify(
        self, headers: Headers, subprotocols: Sequence[str], subject: str | None
    ) -> Caller | Failure:
        """Who a request comes from (protocol §11.3).

        A bearer token (``Authorization: Bearer``, or the ``jackrabbit.bearer.`` subprotocol)
        names its principal, and one that names none is refused, whatever else came with it.
        Without a token, a verified client certificate's ``subject`` names its principal, if
        one has it. Otherwise the caller is anonymous: whether that is enough depends on the
        queue (``admit``). A query string is never looked at.
        """
        tokens: list[bytes] = []
        for name, value in headers:
            if name == b"authorization":
                scheme, _, credential = value.strip().partition(b" ")
                if scheme.lower() != b"bearer" or not credential.strip():
                    return _invalid("the Authorization header must be 'Bearer TOKEN'")
                tokens.append(credential.strip())
        for offered in subprotocols:
            if offered.startswith(BEARER_PREFIX):
                tokens.append(offered[len(BEARER_PREFIX) :].encode("latin-1"))
        if tokens:
            if any(token != tokens[0] for token in tokens):
                return _invalid("more than one token was given")
            digest = token_digest(tokens[0])
            principal = self.by_token(digest)
            if principal is None:
                return _invalid("the token is not valid")
            return Caller(self, principal, digest)
        if subject is not None:
            principal = self._by_subject.get(subject)
            if principal is not None:
                return Caller(self, principal, None)
        return Caller(self, self.anonymous, None)

    def recognize(self, token: bytes | None, subject: str | None) -> Caller | None:
        """The caller an open connection is under this policy: by the digest of the token it
        was admitted with (None once no principal has that token), else as ``identify``."""
        if token is not None:
            principal = self.by_token(token)
            return None if principal is None else Caller(self, principal, token)
        if subject is not None:
            principal = self._by_subject.get(subject)
            if principal is not None:
                return Caller(self, principal, None)
        return Caller(self, self.anonymous, None)

    def admit(
        self, caller: Caller | Failure, queue: str
    ) -> tuple[Caller, frozenset[Action]] | Failure:
        """An upgrade to ``queue`` (protocol §11.4): the caller and what it may do there, or
        401 for one without credentials when anonymous may do nothing there, 403 for a known
        principal with no grant there."""
        if isinstance(caller, Failure):
            return caller
        allowed = caller.actions_on(queue)
        if allowed:
            return caller, allowed
        return self.refuse(caller, f"no grant on queue {queue}")

    def refuse(self, caller: Caller, message: str) -> Failure:
        """What a caller who may not do something is told: 401 asks an anonymous one for
        credentials, 403 tells a known principal no."""
        if caller.anonymous:
            return Failure(401, "no_credentials", "credentials needed")
        return Failure(403, "no_grant", message, caller.name)


def _invalid(message: str) -> Failure:
    return Failure(401, "invalid_credentials", message)


#: The policy of a server without ``--auth``: anyone may do anything (protocol §11.1).
OPEN: Final = AccessPolicy((), [Grant(action, "*") for action in ACTIONS])
