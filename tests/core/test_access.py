"""Access control's pure parts (protocol §11): the grant matcher (with property tests),
grants, principals, the policy's identification of callers, and the per-address slow-down."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jackrabbit_core.access import (
    EVERYTHING,
    NOTHING,
    AccessPolicy,
    Caller,
    Failure,
    Grant,
    Principal,
    pattern_matches,
    token_digest,
)
from jackrabbit_core.penalties import (
    FIRST_DELAY,
    FORGIVE_AFTER,
    FREE_FAILURES,
    MAX_ADDRESSES,
    MAX_DELAY,
    Penalties,
    address_key,
)

# -- the matcher ------------------------------------------------------------------------------

NAME_CHARS = "ab.-_0"
names = st.text(alphabet=NAME_CHARS, max_size=12)
patterns = st.text(alphabet=NAME_CHARS + "*", max_size=12)


def reference(pattern: str, name: str) -> bool:
    """What ``*`` means, said with a regular expression."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, name, re.DOTALL) is not None


@given(patterns, names)
def test_the_matcher_agrees_with_a_regular_expression(pattern: str, name: str) -> None:
    assert pattern_matches(pattern, name) == reference(pattern, name)


@given(names)
def test_a_pattern_without_a_star_matches_only_itself(name: str) -> None:
    assert pattern_matches(name, name)
    assert not pattern_matches(name, name + "a")
    assert not pattern_matches(name + "a", name)


@given(names)
def test_a_star_matches_any_name(name: str) -> None:
    assert pattern_matches("*", name)
    assert pattern_matches("**", name)


@given(names, names, names)
def test_a_star_in_place_of_any_part_of_a_name_still_matches_it(
    before: str, middle: str, after: str
) -> None:
    assert pattern_matches(f"{before}*{after}", before + middle + after)
    assert pattern_matches(f"*{middle}*", before + middle + after)


@given(patterns, names)
def test_every_star_can_stand_for_nothing(pattern: str, name: str) -> None:
    """A pattern matches the name it becomes when its stars stand for nothing."""
    assert pattern_matches(pattern, pattern.replace("*", ""))


def test_the_matcher_does_not_blow_up_on_many_stars() -> None:
    """Backtracking on every star would take 2^40 steps here."""
    assert not pattern_matches("*a" * 40 + "b", "a" * 120)


# -- grants and principals --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["produce:orders", "consume:orders-*", "read:*", "admin:*.dead", "produce:a*b*c"],
)
def test_grants_parse_and_print_back(text: str) -> None:
    assert str(Grant.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "produce",
        "write:orders",
        "Produce:orders",
        "produce:",
        "produce:orders/x",
        "produce:or ders",
        "produce:" + "a" * 257,
        ":orders",
    ],
)
def test_bad_grants_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="grant"):
        Grant.parse(text)


def grants(*texts: str) -> tuple[Grant, ...]:
    return tuple(Grant.parse(t) for t in texts)


def test_a_principal_s_actions_on_a_queue_are_the_grants_that_cover_it() -> None:
    p = Principal("p", grants("produce:orders-*", "consume:orders-eu", "admin:*"))
    assert p.actions_on("orders-eu") == {"produce", "consume", "admin"}
    assert p.actions_on("orders-us") == {"produce", "admin"}
    assert p.actions_on("billing") == {"admin"}
    assert p.may_anywhere("admin") and not p.may_anywhere("read")
    # the sets are shared: caching one per connection costs a pointer
    assert p.actions_on("orders-us") is Principal("q", grants("admin:x", "produce:*")).actions_on(
        "x"
    )
    assert Principal("z", ()).actions_on("x") is NOTHING


# -- the policy -------------------------------------------------------------------------------

TOKEN_A, TOKEN_B = b"token-of-a", b"token-of-b"


def policy(anonymous: tuple[str, ...] = ()) -> AccessPolicy:
    return AccessPolicy(
        [
            Principal("a", grants("produce:orders"), token_digest(TOKEN_A)),
            Principal("b", grants("consume:orders", "read:*"), token_digest(TOKEN_B)),
            Principal("edge", grants("produce:*"), subject="CN=edge,O=Example"),
        ],
        grants(*anonymous),
    )


def bearer(token: bytes) -> tuple[tuple[bytes, bytes], ...]:
    return ((b"authorization", b"Bearer " + token),)


def named(caller: Caller | Failure) -> str:
    assert isinstance(caller, Caller), caller
    return caller.name


def test_a_bearer_token_names_its_principal_by_header_or_subprotocol() -> None:
    p = policy()
    assert named(p.identify(bearer(TOKEN_A), (), None)) == "a"
    assert named(p.identify(((b"authorization", b"bearer  token-of-b "),), (), None)) == "b"
    offered = ("jackrabbit.v1", "jackrabbit.bearer.token-of-b")
    assert named(p.identify((), offered, None)) == "b"
    assert named(p.identify(bearer(TOKEN_B), offered, None)) == "b"  # the same token twice


@pytest.mark.parametrize(
    ("headers", "offered"),
    [
        (bearer(b"guess"), ()),
        ((), ("jackrabbit.bearer.guess",)),
        (bearer(TOKEN_A), ("jackrabbit.bearer.token-of-b",)),  # two different tokens
        (((b"authorization", b"Basic dXNlcjpwYXNz"),), ()),
        (((b"authorization", b"Bearer"),), ()),
    ],
)
def test_invalid_credentials_are_a_401_failure_whatever_else_came(
    headers: tuple[tuple[bytes, bytes], ...], offered: tuple[str, ...]
) -> None:
    failure = policy(("produce:*",)).identify(headers, offered, "CN=edge,O=Example")
    assert isinstance(failure, Failure)
    assert (failure.status, failure.reason) == (401, "invalid_credentials")
    assert failure.headers == (
        (b"www-authenticate", b'Bearer realm="jackrabbit", error="invalid_token"'),
    )


def test_a_verified_certificate_names_its_principal_and_an_unknown_one_is_anonymous() -> None:
    p = policy()
    assert named(p.identify((), (), "CN=edge,O=Example")) == "edge"
    caller = p.identify((), (), "CN=stranger,O=Example")
    assert isinstance(caller, Caller) and caller.anonymous


def test_admission_401_for_the_anonymous_403_for_a_principal_without_a_grant() -> None:
    p = policy(("produce:legacy",))
    admitted = p.admit(p.identify((), (), None), "legacy")
    assert not isinstance(admitted, Failure)
    assert admitted[0].anonymous and admitted[1] == {"produce"}
    no_one = p.admit(p.identify((), (), None), "orders")
    assert isinstance(no_one, Failure) and (no_one.status, no_one.reason) == (401, "no_credentials")
    assert no_one.headers == ((b"www-authenticate", b'Bearer realm="jackrabbit"'),)
    refused = p.admit(p.identify(bearer(TOKEN_A), (), None), "billing")
    assert isinstance(refused, Failure)
    assert (refused.status, refused.reason, refused.principal) == (403, "no_grant", "a")
    assert refused.headers == ()


def test_a_principal_may_also_do_what_anonymous_may() -> None:
    p = policy(("produce:legacy", "read:orders"))
    caller = p.identify(bearer(TOKEN_A), (), None)
    assert isinstance(caller, Caller)
    assert caller.actions_on("orders") == {"produce", "read"}
    assert caller.actions_on("legacy") == {"produce"}
    assert caller.may("produce", "legacy") and not caller.may("consume", "legacy")


def test_a_token_finds_its_principal_among_many() -> None:
    """Every digest is compared (constant time); the matching one wins wherever it is."""
    principals = [Principal(f"p{i}", (), token_digest(b"t%d" % i)) for i in range(50)]
    p = AccessPolicy(principals)
    for i in (0, 17, 49):
        assert p.by_token(token_digest(b"t%d" % i)) is principals[i]
    assert p.by_token(token_digest(b"t50")) is None


def test_recognize_finds_an_open_connection_s_principal_under_a_new_policy() -> None:
    old = policy()
    caller = old.identify(bearer(TOKEN_A), (), None)
    assert isinstance(caller, Caller)
    new = AccessPolicy([Principal("renamed", grants("read:*"), token_digest(TOKEN_A))])
    again = new.recognize(caller.token, None)
    assert again is not None and again.name == "renamed"
    assert AccessPolicy([]).recognize(caller.token, None) is None  # the token is gone


@pytest.mark.parametrize(
    "principals",
    [
        [Principal("x", ()), Principal("x", ())],
        [Principal("anonymous", ())],
        [Principal("x", (), token_digest(b"t")), Principal("y", (), token_digest(b"t"))],
        [Principal("x", (), subject="CN=a"), Principal("y", (), subject="CN=a")],
        [Principal("x", (), b"short")],
    ],
)
def test_each_credential_names_one_principal(principals: list[Principal]) -> None:
    with pytest.raises(ValueError):
        AccessPolicy(principals)


def test_without_auth_the_open_policy_allows_everything() -> None:
    from jackrabbit_core.access import OPEN

    caller = OPEN.identify((), (), None)
    assert isinstance(caller, Caller) and caller.actions_on("anything") is EVERYTHING


# -- slowing down an address ------------------------------------------------------------------


def test_an_address_is_slowed_after_its_free_failures_up_to_a_bound() -> None:
    penalties = Penalties()
    delays = []
    for _ in range(FREE_FAILURES + 8):
        delays.append(penalties.delay("10.0.0.1", 0.0))
        penalties.failed("10.0.0.1", 0.0)
    assert delays[:FREE_FAILURES] == [0.0] * FREE_FAILURES
    assert delays[FREE_FAILURES] == FIRST_DELAY
    assert delays[FREE_FAILURES + 1] == 2 * FIRST_DELAY
    assert max(delays) == MAX_DELAY == delays[-1]
    assert penalties.delay("10.0.0.2", 0.0) == 0.0  # nobody else
    assert penalties.delay("10.0.0.1", FORGIVE_AFTER) == 0.0  # forgiven in time


def test_ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key("not an address") == "not an address"


def test_the_table_of_addresses_is_bounded() -> None:
    penalties = Penalties()
    for i in range(MAX_ADDRESSES + 500):
        penalties.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", float(i))
    assert len(penalties) == MAX_ADDRESSES
