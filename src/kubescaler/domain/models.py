"""Users and profiles: the data half of kubescaler, as msgspec structs shared by every service."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]

#: Most user ids one profile may hold, and so one request may name for a profile: base checks
#: every named user exists, and a set this size is still a small Cassandra cell (about 160 KB).
MAX_PROFILE_USERS = 10_000

ProfileUsers = Annotated[
    list[uuid.UUID],
    msgspec.Meta(
        max_length=MAX_PROFILE_USERS,
        description=f"user ids bound to the profile (at most {MAX_PROFILE_USERS})",
    ),
]


class Model(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every API body: unknown fields are an error, not silently dropped."""


class User(Model):
    id: uuid.UUID
    name: str


class Profile(Model):
    id: uuid.UUID
    users: ProfileUsers


class UserIn(Model):
    """Body of create and update. ``id`` is optional on create (a new one is made)."""

    name: Name
    id: uuid.UUID | None = None


class ProfileIn(Model):
    users: ProfileUsers = msgspec.field(default_factory=list)
    id: uuid.UUID | None = None


class Binding(Model):
    """Whether a user is bound to a profile. ``missing`` names what does not exist (then the
    pair is not bound): "profile" or "user"; a single-pair lookup answers 404 instead."""

    user_id: uuid.UUID
    profile_id: uuid.UUID
    bound: bool
    missing: Literal["profile", "user"] | None = None


#: Most pairs one ``POST /bindings`` may ask about.
MAX_BINDINGS = 1000


class Pair(Model):
    user_id: uuid.UUID
    profile_id: uuid.UUID


class BindingsQuery(Model):
    """Many pairs asked at once (a stream process's opens of one moment)."""

    pairs: Annotated[
        list[Pair], msgspec.Meta(max_length=MAX_BINDINGS, description=f"at most {MAX_BINDINGS}")
    ]


class Bindings(Model):
    """The answer for each pair asked, in the order asked."""

    items: list[Binding]


class SuggestedUser(Model):
    """A user bound to two or more profiles: the pairs worth opening streams for."""

    id: uuid.UUID
    profiles: list[uuid.UUID]


#: The least and most of each test-data parameter (``POST /main/testdata``); TestDataRequest
#: holds them and main's route documents them.
TESTDATA_BOUNDS: dict[str, tuple[int, int]] = {
    "users": (0, 100_000),
    "profiles": (0, 10_000),
    "users_per_profile": (1, 1000),
    "shared_users": (0, 100_000),
    "profiles_per_shared_user": (2, 100),
}


def _bounds(name: str, description: str = "") -> msgspec.Meta:
    least, most = TESTDATA_BOUNDS[name]
    return msgspec.Meta(ge=least, le=most, description=description or None)


class TestDataRequest(Model):
    """What random test data to make; ``domain.testdata.generate`` checks the bounds."""

    users: Annotated[int, _bounds("users")] = 100
    profiles: Annotated[int, _bounds("profiles")] = 20
    users_per_profile: Annotated[int, _bounds("users_per_profile")] = 3
    shared_users: Annotated[int, _bounds("shared_users", "users bound to several profiles")] = 10
    profiles_per_shared_user: Annotated[int, _bounds("profiles_per_shared_user")] = 3


class TestDataSummary(Model):
    users: int
    profiles: int
    suggested: int
    seconds: float


def parse_uuid(value: str, what: str) -> uuid.UUID:
    """A path or query UUID, or InvalidInput naming which one is malformed."""
    from kubescaler.domain.errors import InvalidInput

    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"{what} is not a valid UUID: {value!r}") from None


class UserPage(Model):
    """One page of users; ``next`` is the token of the following page, null on the last."""

    items: list[User]
    next: str | None


class ProfilePage(Model):
    items: list[Profile]
    next: str | None


class Bulk(Model):
    """Rows written or deleted in one request (test data)."""

    users: list[User] = msgspec.field(default_factory=list)
    profiles: list[Profile] = msgspec.field(default_factory=list)


class BulkIds(Model):
    users: list[uuid.UUID] = msgspec.field(default_factory=list)
    profiles: list[uuid.UUID] = msgspec.field(default_factory=list)


class Counts(Model):
    users: int
    profiles: int
