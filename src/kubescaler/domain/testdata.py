"""Random test data: users, profiles, and some users bound to several profiles (pure logic)."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Iterable

from kubescaler.domain.errors import InvalidInput
from kubescaler.domain.models import Bulk, Profile, SuggestedUser, TestDataRequest, User


def generate(req: TestDataRequest, rng: random.Random | None = None) -> Bulk:
    """Users and profiles where exactly ``req.shared_users`` users sit in 2+ profiles.

    Shared users join ``profiles_per_shared_user`` distinct random profiles each; every other
    user joins at most one profile, ``users_per_profile`` to a profile while they last.
    """
    rng = rng or random.Random()
    if req.shared_users > req.users:
        raise InvalidInput(f"shared_users ({req.shared_users}) exceeds users ({req.users})")
    if req.shared_users and req.profiles < req.profiles_per_shared_user:
        raise InvalidInput(
            f"profiles ({req.profiles}) must be at least profiles_per_shared_user "
            f"({req.profiles_per_shared_user}) to bind shared users to several profiles"
        )
    users = [
        User(id=uuid.UUID(int=rng.getrandbits(128), version=4), name=f"user-{i:06d}")
        for i in range(req.users)
    ]
    members: list[list[uuid.UUID]] = [[] for _ in range(req.profiles)]
    for user in users[: req.shared_users]:
        for index in rng.sample(range(req.profiles), req.profiles_per_shared_user):
            members[index].append(user.id)
    single = iter(users[req.shared_users :])
    for group in members:
        for _, user in zip(range(req.users_per_profile), single, strict=False):
            group.append(user.id)
    profiles = [
        Profile(id=uuid.UUID(int=rng.getrandbits(128), version=4), users=sorted(group))
        for group in members
    ]
    return Bulk(users=users, profiles=profiles)


def suggested(profiles: Iterable[Profile]) -> list[SuggestedUser]:
    """Users bound to two or more profiles, with those profiles, ordered by user id."""
    by_user: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for profile in profiles:
        for user in profile.users:
            by_user[user].append(profile.id)
    return [
        SuggestedUser(id=user, profiles=sorted(ids))
        for user, ids in sorted(by_user.items())
        if len(ids) >= 2
    ]


def chunks(bulk: Bulk, size: int) -> list[Bulk]:
    """Split a bulk write into bodies of at most ``size`` rows: users first, then profiles."""
    out = [Bulk(users=bulk.users[i : i + size]) for i in range(0, len(bulk.users), size)]
    out += [Bulk(profiles=bulk.profiles[i : i + size]) for i in range(0, len(bulk.profiles), size)]
    return out
