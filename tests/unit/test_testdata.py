"""Random test data and suggested users: pure logic."""

from __future__ import annotations

import random
import uuid
from collections import Counter

import msgspec
import pytest

from kubescaler.domain.errors import InvalidInput
from kubescaler.domain.models import MAX_PROFILE_USERS, Bulk, Profile, TestDataRequest
from kubescaler.domain.testdata import chunks, generate, suggested


@pytest.mark.parametrize(
    ("users", "profiles", "per", "shared", "k"),
    [(100, 20, 3, 10, 3), (10_000, 1_000, 5, 500, 4), (5, 4, 1, 1, 4), (10, 2, 3, 0, 2)],
)
def test_exactly_the_shared_users_sit_in_several_profiles(
    users: int, profiles: int, per: int, shared: int, k: int
) -> None:
    """Shared users are in k profiles each; every other user in at most one."""
    req = TestDataRequest(
        users=users,
        profiles=profiles,
        users_per_profile=per,
        shared_users=shared,
        profiles_per_shared_user=k,
    )
    bulk = generate(req, random.Random(7))
    assert len(bulk.users) == users
    assert len(bulk.profiles) == profiles
    counts = Counter(u for p in bulk.profiles for u in p.users)
    multi = {u for u, n in counts.items() if n >= 2}
    assert multi == {u.id for u in bulk.users[:shared]}
    assert all(counts[u.id] == k for u in bulk.users[:shared])
    assert all(len(set(p.users)) == len(p.users) for p in bulk.profiles)
    assert len(suggested(bulk.profiles)) == shared


def test_impossible_sizes_are_refused() -> None:
    """Asking for more shared users than users, or too few profiles, is a clear error."""
    with pytest.raises(InvalidInput, match="shared_users"):
        generate(TestDataRequest(users=2, shared_users=3))
    with pytest.raises(InvalidInput, match="profiles_per_shared_user"):
        generate(TestDataRequest(users=5, profiles=2, shared_users=1, profiles_per_shared_user=3))


def test_suggested_lists_users_with_two_or_more_profiles_and_their_profiles() -> None:
    """Suggested is computed from the data alone, so every replica answers the same."""
    a, b, c = (uuid.UUID(int=i) for i in (1, 2, 3))
    p1, p2, p3 = (uuid.UUID(int=i) for i in (11, 12, 13))
    got = suggested(
        [Profile(id=p1, users=[a, b]), Profile(id=p2, users=[a]), Profile(id=p3, users=[a, b, c])]
    )
    assert [(s.id, s.profiles) for s in got] == [(a, [p1, p2, p3]), (b, [p1, p3])]


def test_chunks_cover_every_row_once_users_first_within_the_id_budget() -> None:
    """Bodies hold at most `size` ids (a profile counts 1 + its users); users go first."""
    bulk = generate(TestDataRequest(users=25, profiles=7, shared_users=2), random.Random(1))
    parts = chunks(bulk, 10)
    assert [len(p.users) for p in parts[:3]] == [10, 10, 5]
    assert all(not p.profiles for p in parts[:3])
    assert all(not p.users for p in parts[3:])
    assert [q for p in parts for q in p.profiles] == bulk.profiles
    for part in parts:
        assert len(part.users) + sum(1 + len(q.users) for q in part.profiles) <= 10


def test_a_profile_larger_than_the_budget_travels_alone() -> None:
    big = Profile(id=uuid.UUID(int=1), users=[uuid.UUID(int=i) for i in range(50)])
    small = Profile(id=uuid.UUID(int=2), users=[])
    parts = chunks(Bulk(profiles=[small, big, small]), 10)
    assert [p.profiles for p in parts] == [[small], [big], [small]]


def test_shared_users_are_spread_evenly_over_the_profiles() -> None:
    """Every profile gets as many shared users as any other, give or take one."""
    req = TestDataRequest(
        users=1000, profiles=7, users_per_profile=1, shared_users=1000, profiles_per_shared_user=3
    )
    sizes = [len(p.users) for p in generate(req, random.Random(3)).profiles]
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) == 3000


def test_profiles_over_the_user_cap_are_refused_up_front() -> None:
    """Test data never asks base for a profile over MAX_PROFILE_USERS: a clear 400 instead."""
    req = TestDataRequest(
        users=100_000, profiles=2, shared_users=100_000, profiles_per_shared_user=2
    )
    with pytest.raises(InvalidInput, match=f"cap of {MAX_PROFILE_USERS}"):
        generate(req)
    fits = TestDataRequest(
        users=MAX_PROFILE_USERS,
        profiles=2,
        users_per_profile=1,
        shared_users=MAX_PROFILE_USERS - 1,
        profiles_per_shared_user=2,
    )
    assert max(len(p.users) for p in generate(fits).profiles) == MAX_PROFILE_USERS


@pytest.mark.parametrize(
    ("field", "value"),
    [("users", -1), ("users", 100_001), ("profiles_per_shared_user", 1), ("users_per_profile", 0)],
)
def test_a_request_outside_its_bounds_is_refused_naming_the_field(field: str, value: int) -> None:
    """TestDataRequest's bounds hold for a struct built in code too, not only a decoded one."""
    req = msgspec.structs.replace(TestDataRequest(), **{field: value})
    with pytest.raises(InvalidInput, match=field):
        generate(req)
