"""An in-memory stand-in for base's store port (``services/catalog.Store``).

It keeps what the Cassandra repository (``adapters/cassandra.py``) does where the catalog's
rules depend on it, so they run without a server; ``tests/integration/test_base.py`` holds the
real repository to the same behaviour through base's HTTP API:

- a table scan pages in a fixed order (Cassandra's is the token order, here the ids'), and a
  full page comes with a paging state even when nothing follows (the next page is then empty),
  as Cassandra's pager does;
- a paging state it did not hand out is an error: Cassandra answers one with a protocol error
  and the driver drops the connection, so the catalog must never forward one;
- conditional writes (IF NOT EXISTS, IF EXISTS) say whether they applied;
- deleting a user with its unbinding is all or nothing (a logged batch);
- with ``down`` set every call raises DependencyUnavailable naming cassandra, as the
  repository does for a driver error;
- ``calls`` records each call by name, to count round trips.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.domain.models import Profile, User

V = TypeVar("V")


@dataclass
class FakeStore:
    users: dict[uuid.UUID, str] = field(default_factory=dict)
    profiles: dict[uuid.UUID, set[uuid.UUID]] = field(default_factory=dict)
    down: bool = False
    calls: list[str] = field(default_factory=list)
    issued: set[bytes] = field(default_factory=set)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise DependencyUnavailable("cassandra", "NoHostAvailable: the fake store is down")

    def _scan(
        self, table: Mapping[uuid.UUID, V], limit: int, state: bytes | None
    ) -> tuple[list[uuid.UUID], bytes | None]:
        if state is not None and state not in self.issued:
            raise AssertionError(f"Cassandra would drop the connection on paging state {state!r}")
        after = uuid.UUID(bytes=state[-16:]) if state else None
        page = sorted(i for i in table if after is None or i > after)[:limit]
        if len(page) < limit:
            return page, None
        nxt = b"fake-paging-state:" + page[-1].bytes
        self.issued.add(nxt)
        return page, nxt

    @staticmethod
    def _write(table: dict[uuid.UUID, V], key: uuid.UUID, value: V, *, exists: bool) -> bool:
        """A conditional write, IF EXISTS (``exists``) or IF NOT EXISTS: whether it applied."""
        if (key in table) != exists:
            return False
        table[key] = value
        return True

    def _profile(self, profile_id: uuid.UUID) -> Profile:
        return Profile(id=profile_id, users=sorted(self.profiles[profile_id]))

    # -- users ---------------------------------------------------------------------------------

    async def users_page(self, limit: int, state: bytes | None) -> tuple[list[User], bytes | None]:
        self._call("users_page")
        ids, nxt = self._scan(self.users, limit, state)
        return [User(id=i, name=self.users[i]) for i in ids], nxt

    async def get_user(self, user_id: uuid.UUID) -> User | None:
        self._call("get_user")
        name = self.users.get(user_id)
        return None if name is None else User(id=user_id, name=name)

    async def users_exist(self, user_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        self._call("users_exist")
        return {u for u in user_ids if u in self.users}

    async def create_user(self, user: User) -> bool:
        self._call("create_user")
        return self._write(self.users, user.id, user.name, exists=False)

    async def update_user(self, user: User) -> bool:
        self._call("update_user")
        return self._write(self.users, user.id, user.name, exists=True)

    async def delete_user(self, user_id: uuid.UUID, unbind: Sequence[uuid.UUID]) -> None:
        self._call("delete_user")
        for profile_id in unbind:
            self.profiles.get(profile_id, set()).discard(user_id)
        self.users.pop(user_id, None)

    # -- profiles ------------------------------------------------------------------------------

    async def profiles_page(
        self, limit: int, state: bytes | None
    ) -> tuple[list[Profile], bytes | None]:
        self._call("profiles_page")
        ids, nxt = self._scan(self.profiles, limit, state)
        return [self._profile(i) for i in ids], nxt

    async def get_profile(self, profile_id: uuid.UUID) -> Profile | None:
        self._call("get_profile")
        return self._profile(profile_id) if profile_id in self.profiles else None

    async def members(self, profile_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, set[uuid.UUID]]:
        self._call("members")
        return {p: set(self.profiles[p]) for p in profile_ids if p in self.profiles}

    async def profiles_of_user(self, user_id: uuid.UUID) -> list[Profile]:
        self._call("profiles_of_user")
        return [self._profile(p) for p in sorted(self.profiles) if user_id in self.profiles[p]]

    async def create_profile(self, profile: Profile) -> bool:
        self._call("create_profile")
        return self._write(self.profiles, profile.id, set(profile.users), exists=False)

    async def update_profile(self, profile: Profile) -> bool:
        self._call("update_profile")
        return self._write(self.profiles, profile.id, set(profile.users), exists=True)

    async def delete_profile(self, profile_id: uuid.UUID) -> bool:
        self._call("delete_profile")
        return self.profiles.pop(profile_id, None) is not None

    # -- bulk ----------------------------------------------------------------------------------

    async def insert_many(self, users: Sequence[User], profiles: Sequence[Profile]) -> None:
        self._call("insert_many")
        self.users.update((u.id, u.name) for u in users)
        self.profiles.update((p.id, set(p.users)) for p in profiles)

    async def delete_many(
        self, user_ids: Sequence[uuid.UUID], profile_ids: Sequence[uuid.UUID]
    ) -> None:
        self._call("delete_many")
        for p in profile_ids:
            self.profiles.pop(p, None)
        for u in user_ids:
            self.users.pop(u, None)

    async def drop_all(self) -> None:
        self._call("drop_all")
        self.users.clear()
        self.profiles.clear()
