"""Who is bound to what (services/catalog): POST /bindings and the one-pair lookup, over the
in-memory store."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from catalogfakes import FakeStore

from kubescaler.domain.errors import NotFound
from kubescaler.domain.models import MAX_BINDINGS, BindingsQuery, Pair
from kubescaler.services.catalog import Catalog

A, B, GHOST_USER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
P, Q, GHOST_PROFILE = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def world() -> tuple[Catalog, FakeStore]:
    """Users A and B; profile P holds A, profile Q holds A and B."""
    store = FakeStore(users={A: "a", B: "b"}, profiles={P: {A}, Q: {A, B}})
    return Catalog(store, "k"), store


def pairs(*asked: tuple[uuid.UUID, uuid.UUID]) -> list[Pair]:
    return [Pair(user_id=u, profile_id=p) for u, p in asked]


async def test_each_pair_is_bound_or_says_what_is_missing_in_the_order_asked() -> None:
    """bound; known but not bound; unknown profile (missing "profile", also when the user is
    unknown too); unknown user (missing "user"); the answer keeps the order and repeats."""
    base, _ = world()
    asked = [(A, P), (B, P), (A, GHOST_PROFILE), (GHOST_USER, GHOST_PROFILE), (GHOST_USER, P)]
    asked += [(A, P)]
    got = (await base.bindings(pairs(*asked))).items
    assert [(b.user_id, b.profile_id) for b in got] == asked
    assert [(b.bound, b.missing) for b in got] == [
        (True, None),
        (False, None),
        (False, "profile"),
        (False, "profile"),
        (False, "user"),
        (True, None),
    ]


async def test_bound_pairs_cost_one_read_of_their_profiles() -> None:
    """When every profile holds its user, users are not asked about (a held user exists)."""
    base, store = world()
    await base.bindings(pairs((A, P), (A, Q), (B, Q), (A, GHOST_PROFILE)))
    assert store.calls == ["members"]


async def test_users_outside_their_profile_cost_one_more_read_in_all() -> None:
    """However many pairs miss, the users' existence is one read of all of them together."""
    base, store = world()
    await base.bindings(pairs((B, P), (GHOST_USER, P), (GHOST_USER, Q), (A, P)))
    assert store.calls == ["members", "users_exist"]


async def test_up_to_1000_pairs_are_answered_in_two_reads_and_more_are_refused() -> None:
    """The body takes at most MAX_BINDINGS (1,000) pairs (more is a 400 when decoded); a full
    query of distinct profiles is still one read of profiles and one of users."""
    assert MAX_BINDINGS == 1000
    many = [{"user_id": str(uuid.uuid4()), "profile_id": str(P)}] * (MAX_BINDINGS + 1)
    with pytest.raises(msgspec.ValidationError, match="length <= 1000"):
        msgspec.json.decode(msgspec.json.encode({"pairs": many}), type=BindingsQuery)
    base, store = world()
    full = [Pair(user_id=uuid.uuid4(), profile_id=uuid.uuid4()) for _ in range(MAX_BINDINGS)]
    full[0] = Pair(user_id=B, profile_id=P)
    got = (await base.bindings(full)).items
    assert len(got) == MAX_BINDINGS
    assert (got[0].bound, got[0].missing) == (False, None)
    assert {b.missing for b in got[1:]} == {"profile"}
    assert store.calls == ["members", "users_exist"]


async def test_no_pairs_is_an_empty_answer() -> None:
    """An empty query answers no items and asks nothing about users."""
    base, store = world()
    assert (await base.bindings([])).items == []
    assert "users_exist" not in store.calls


async def test_one_pair_is_bound_or_not() -> None:
    """GET /users/{u}/profiles/{p}: whether the profile holds the user."""
    base, _ = world()
    assert (await base.binding(A, P)).bound is True
    assert (await base.binding(B, P)).bound is False


@pytest.mark.parametrize(
    ("user", "profile", "kind"),
    [
        (A, GHOST_PROFILE, "profile"),
        (GHOST_USER, P, "user"),
        (GHOST_USER, GHOST_PROFILE, "profile"),
    ],
)
async def test_one_pair_with_an_unknown_side_is_404_naming_it(
    user: uuid.UUID, profile: uuid.UUID, kind: str
) -> None:
    """The one-pair lookup is 404 (not "missing"): the profile is named first when both are."""
    base, _ = world()
    with pytest.raises(NotFound) as caught:
        await base.binding(user, profile)
    assert caught.value.extra["kind"] == kind
