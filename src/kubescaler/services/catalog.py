"""base's use cases: users, profiles and who is bound to what, over a store port.

Every rule of base lives here, over :class:`Store` (the Cassandra repository in production, an
in-memory fake in the unit tests):

- lists come a page at a time; a page token is the store's paging state signed for its list
  (``domain/paging``), so a forged one, one signed with another key or one from another list
  is a 400 and never reaches the store;
- an id that names nothing is a 404 naming its kind; a store that does not answer raises
  DependencyUnavailable itself (a 503 naming it), and nothing here turns that into an absence
  or an empty list;
- a profile names only users that exist (a 400 listing the unknown ones);
- deleting a user unbinds it from every profile in the same all-or-nothing write;
- ``bindings`` answers many pairs with one read of their profiles and at most one of users.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Literal, Protocol, TypeVar

from kubescaler.domain.errors import Conflict, InvalidInput, NotFound
from kubescaler.domain.models import (
    Binding,
    Bindings,
    Bulk,
    BulkIds,
    Counts,
    Pair,
    Profile,
    ProfileIn,
    ProfilePage,
    User,
    UserIn,
    UserPage,
)
from kubescaler.domain.paging import decode_token, encode_token

T = TypeVar("T")
#: A store's page: its rows and the paging state of the next one (None: none follows).
Page = tuple[list[T], bytes | None]
#: Unknown user ids named in an error message; the error's body lists them all.
SHOWN = 10


class Store(Protocol):
    """Users and profiles as stored (``adapters.cassandra.CassandraRepository``).

    Absence is a value (None, False, a missing key), never an error: what it means is the
    catalog's rule. A store that does not answer raises DependencyUnavailable naming itself.
    """

    async def users_page(self, limit: int, state: bytes | None) -> Page[User]: ...

    async def profiles_page(self, limit: int, state: bytes | None) -> Page[Profile]: ...

    async def get_user(self, user_id: uuid.UUID) -> User | None: ...

    async def get_profile(self, profile_id: uuid.UUID) -> Profile | None: ...

    async def users_exist(self, user_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        """Which of ``user_ids`` exist."""
        ...

    async def members(
        self, profile_ids: Collection[uuid.UUID]
    ) -> Mapping[uuid.UUID, Collection[uuid.UUID]]:
        """The users of each of ``profile_ids`` that exists; an unknown id has no key."""
        ...

    async def profiles_of_user(self, user_id: uuid.UUID) -> list[Profile]:
        """Every profile that holds the user (empty for an unknown user too)."""
        ...

    async def create_user(self, user: User) -> bool:
        """Insert unless the id exists; False when it does."""
        ...

    async def update_user(self, user: User) -> bool:
        """Update if the id exists; False when it does not."""
        ...

    async def delete_user(self, user_id: uuid.UUID, unbind: Sequence[uuid.UUID]) -> None:
        """Delete the user and take it out of the profiles ``unbind``, all or nothing."""
        ...

    async def create_profile(self, profile: Profile) -> bool: ...

    async def update_profile(self, profile: Profile) -> bool: ...

    async def delete_profile(self, profile_id: uuid.UUID) -> bool:
        """Delete if the id exists; False when it does not."""
        ...

    async def insert_many(self, users: Sequence[User], profiles: Sequence[Profile]) -> None:
        """Write fresh rows as they are, without checks (test data)."""
        ...

    async def delete_many(
        self, user_ids: Sequence[uuid.UUID], profile_ids: Sequence[uuid.UUID]
    ) -> None: ...

    async def drop_all(self) -> None: ...


def _same_id(path_id: uuid.UUID, body_id: uuid.UUID | None) -> None:
    if body_id is not None and body_id != path_id:
        raise InvalidInput(f"body id {body_id} differs from the path id {path_id}")


def _known(kind: str, ident: uuid.UUID, row: T | None) -> T:
    """``row``, or NotFound naming its kind when the store has none."""
    if row is None:
        raise NotFound(kind, ident)
    return row


def _found(kind: str, ident: uuid.UUID, applied: bool) -> None:
    """NotFound when a write on an existing row (IF EXISTS) did not apply."""
    if not applied:
        raise NotFound(kind, ident)


def _new(kind: str, ident: uuid.UUID, applied: bool) -> None:
    """Conflict when a write of a new row (IF NOT EXISTS) did not apply: the id is taken."""
    if not applied:
        raise Conflict(f"{kind} {ident} already exists", id=str(ident))


class Catalog:
    """base's use cases over ``store``; ``page_key`` signs the lists' page tokens (the same
    secret on every replica, so any replica reads a token another one wrote)."""

    def __init__(self, store: Store, page_key: str) -> None:
        self.store = store
        self._key = page_key.encode()

    async def _page(
        self,
        scope: Literal["users", "profiles"],
        read: Callable[[int, bytes | None], Awaitable[Page[T]]],
        limit: int,
        token: str | None,
    ) -> tuple[list[T], str | None]:
        rows, state = await read(limit, decode_token(self._key, scope, token))
        return rows, encode_token(self._key, scope, state)

    # -- users -------------------------------------------------------------------------------

    async def list_users(self, limit: int, token: str | None) -> UserPage:
        items, nxt = await self._page("users", self.store.users_page, limit, token)
        return UserPage(items=items, next=nxt)

    async def get_user(self, user_id: uuid.UUID) -> User:
        return _known("user", user_id, await self.store.get_user(user_id))

    async def create_user(self, data: UserIn) -> User:
        user = User(id=data.id or uuid.uuid4(), name=data.name)
        _new("user", user.id, await self.store.create_user(user))
        return user

    async def update_user(self, user_id: uuid.UUID, data: UserIn) -> User:
        _same_id(user_id, data.id)
        user = User(id=user_id, name=data.name)
        _found("user", user_id, await self.store.update_user(user))
        return user

    async def delete_user(self, user_id: uuid.UUID) -> None:
        """Delete the user and unbind it from its profiles in one write; 404 when unknown."""
        await self.get_user(user_id)
        profiles = await self.store.profiles_of_user(user_id)
        await self.store.delete_user(user_id, [p.id for p in profiles])

    async def profiles_of_user(self, user_id: uuid.UUID) -> list[Profile]:
        """The user's profiles: one indexed read; only when it finds none is the user looked
        up (404 for an unknown user, [] for one bound to nothing)."""
        profiles = await self.store.profiles_of_user(user_id)
        if not profiles:
            await self.get_user(user_id)
        return profiles

    # -- bindings ----------------------------------------------------------------------------

    async def binding(self, user_id: uuid.UUID, profile_id: uuid.UUID) -> Binding:
        """Whether the user is bound to the profile; 404 naming the profile, else the user,
        when either is unknown."""
        profile, user = await asyncio.gather(
            self.store.get_profile(profile_id), self.store.get_user(user_id)
        )
        users = _known("profile", profile_id, profile).users
        _known("user", user_id, user)
        return Binding(user_id=user_id, profile_id=profile_id, bound=user_id in users)

    async def bindings(self, pairs: Sequence[Pair]) -> Bindings:
        """Each pair bound or not, in the order asked; an unknown profile or user is not bound
        and ``missing`` names it. The users are asked for only where a pair's profile does not
        hold its user (a user a profile holds exists: deleting a user unbinds it)."""
        members = await self.store.members({p.profile_id for p in pairs})
        outside = {
            p.user_id
            for p in pairs
            if (users := members.get(p.profile_id)) is not None and p.user_id not in users
        }
        known = await self.store.users_exist(outside) if outside else outside
        items = []
        missing: Literal["profile", "user"] | None
        for p in pairs:
            users = members.get(p.profile_id)
            if users is None:
                bound, missing = False, "profile"
            else:
                bound = p.user_id in users
                missing = None if bound or p.user_id in known else "user"
            items.append(
                Binding(user_id=p.user_id, profile_id=p.profile_id, bound=bound, missing=missing)
            )
        return Bindings(items=items)

    # -- profiles ----------------------------------------------------------------------------

    async def list_profiles(self, limit: int, token: str | None) -> ProfilePage:
        items, nxt = await self._page("profiles", self.store.profiles_page, limit, token)
        return ProfilePage(items=items, next=nxt)

    async def get_profile(self, profile_id: uuid.UUID) -> Profile:
        return _known("profile", profile_id, await self.store.get_profile(profile_id))

    async def create_profile(self, data: ProfileIn) -> Profile:
        profile = Profile(id=data.id or uuid.uuid4(), users=sorted(set(data.users)))
        await self._check_users(profile.users)
        _new("profile", profile.id, await self.store.create_profile(profile))
        return profile

    async def update_profile(self, profile_id: uuid.UUID, data: ProfileIn) -> Profile:
        _same_id(profile_id, data.id)
        profile = Profile(id=profile_id, users=sorted(set(data.users)))
        await self._check_users(profile.users)
        _found("profile", profile_id, await self.store.update_profile(profile))
        return profile

    async def delete_profile(self, profile_id: uuid.UUID) -> None:
        _found("profile", profile_id, await self.store.delete_profile(profile_id))

    async def _check_users(self, users: list[uuid.UUID]) -> None:
        """InvalidInput listing the users that do not exist, the first few in its message."""
        if not users:
            return
        missing = sorted(map(str, set(users) - await self.store.users_exist(users)))
        if missing:
            more = f" (and {len(missing) - SHOWN} more)" if len(missing) > SHOWN else ""
            raise InvalidInput(
                f"profile names unknown users: {', '.join(missing[:SHOWN])}{more}",
                unknown_users=missing,
            )

    # -- test data ---------------------------------------------------------------------------

    async def insert_many(self, bulk: Bulk) -> Counts:
        """Fresh users and profiles without per-row checks (main's test data)."""
        await self.store.insert_many(bulk.users, bulk.profiles)
        return Counts(users=len(bulk.users), profiles=len(bulk.profiles))

    async def delete_many(self, ids: BulkIds) -> Counts:
        """The named rows, without unbinding (main undoing a test-data run that failed)."""
        await self.store.delete_many(ids.users, ids.profiles)
        return Counts(users=len(ids.users), profiles=len(ids.profiles))

    async def drop_all(self) -> None:
        await self.store.drop_all()
