"""Random test data: users, profiles, and some users bound to several profiles (pure logic)."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Iterable

import msgspec

from kubescaler.domain.errors import InvalidInput
from kubescaler.domain.models import (
    MAX_PROFILE_USERS,
    Bulk,
    Profile,
    SuggestedUser,
    TestDataRequest,
    User,
)


def generate(req: TestDataRequest, rng: random.Random | None = None) -> Bulk:
    """Users and profiles where exactly ``req.shared_users`` users sit in 2+ profiles.

    Shared users join ``profiles_per_shared_user`` distinct profiles each, dealt round a shuffled
    order of the profiles so that every profile gets as many as any other (give or take one);
    every other user joins at most one profile, ``users_per_profile`` to a profile while they
    last. A request whose profiles would exceed ``MAX_PROFILE_USERS`` is refused up front.
    """
    rng = rng or random.Random()
    req = checked(req)
    if req.shared_users > req.users:
        raise InvalidInput(f"shared_users ({req.shared_users}) exceeds users ({req.users})")
    if req.shared_users and req.profiles < req.profiles_per_shared_user:
        raise InvalidInput(
            f"profiles ({req.profiles}) must be at least profiles_per_shared_user "
            f"({req.profiles_per_shared_user}) to bind shared users to several profiles"
        )
    largest = _largest_profile(req)
    if largest > MAX_PROFILE_USERS:
        raise InvalidInput(
            f"a profile would hold {largest} users, over the cap of {MAX_PROFILE_USERS}: "
            "ask for more profiles, fewer users_per_profile or fewer shared users"
        )
    users = [
        User(id=uuid.UUID(int=rng.getrandbits(128), version=4), name=f"user-{i:06d}")
        for i in range(req.users)
    ]
    members: list[list[uuid.UUID]] = [[] for _ in range(req.profiles)]
    order = list(range(req.profiles))
    rng.shuffle(order)
    slot = 0  # consecutive slots are distinct profiles while k <= profiles
    for user in users[: req.shared_users]:
        for _ in range(req.profiles_per_shared_user):
            members[order[slot % req.profiles]].append(user.id)
            slot += 1
    single = iter(users[req.shared_users :])
    for group in members:
        for _, user in zip(range(req.users_per_profile), single, strict=False):
            group.append(user.id)
    profiles = [
        Profile(id=uuid.UUID(int=rng.getrandbits(128), version=4), users=sorted(group))
        for group in members
    ]
    return Bulk(users=users, profiles=profiles)


def checked(req: TestDataRequest) -> TestDataRequest:
    """``req`` if every field is within its bounds, else InvalidInput naming the field (a
    struct built in code is not validated; one decoded from a request is)."""
    try:
        return msgspec.convert(msgspec.structs.asdict(req), TestDataRequest)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"test data: {exc}") from None


def _largest_profile(req: TestDataRequest) -> int:
    """The most users :func:`generate` puts in one profile."""
    if not req.profiles:
        return 0
    shared = -(-req.shared_users * req.profiles_per_shared_user // req.profiles)  # ceiling
    singles = min(req.users_per_profile, req.users - req.shared_users)
    return shared + singles


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
    """Split a bulk write into bodies of at most ``size`` ids: users first, then profiles.

    A user counts one id, a profile one plus its users, so a body's size stays bounded however
    the users are spread; a profile larger than ``size`` travels alone.
    """
    out = [Bulk(users=bulk.users[i : i + size]) for i in range(0, len(bulk.users), size)]
    part: list[Profile] = []
    ids = 0
    for profile in bulk.profiles:
        cost = 1 + len(profile.users)
        if part and ids + cost > size:
            out.append(Bulk(profiles=part))
            part, ids = [], 0
        part.append(profile)
        ids += cost
    if part:
        out.append(Bulk(profiles=part))
    return out
