"""Random test data and suggested users: pure logic."""

from __future__ import annotations

import random
import uuid
from collections import Counter

import pytest

from kubescaler.domain.errors import InvalidInput
from kubescaler.domain.models import Profile, TestDataRequest
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


def test_chunks_cover_every_row_once_users_first() -> None:
    bulk = generate(TestDataRequest(users=25, profiles=7, shared_users=2), random.Random(1))
    parts = chunks(bulk, 10)
    assert [len(p.users) for p in parts] == [10, 10, 5, 0]
    assert [len(p.profiles) for p in parts] == [0, 0, 0, 7]
