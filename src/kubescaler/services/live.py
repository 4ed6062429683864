"""What main answers from base's data and the lock state: suggested users and live profiles.

Over two ports: base's profiles (:class:`Profiles`, ``adapters.base_client.BaseClient``) and
the launched state the lock-keeper keeps (:class:`Launched`,
``adapters.lockstate.launched_profiles`` bound to the state Redis).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Protocol

from kubescaler.domain.models import Profile, ProfilePage, SuggestedUser
from kubescaler.domain.testdata import suggested as suggest

PAGE = 1000


class Profiles(Protocol):
    """base's profiles: a page of all of them, and a user's."""

    async def profiles(self, limit: int, page: str | None) -> ProfilePage: ...

    async def profiles_of_user(self, user_id: uuid.UUID) -> list[Profile]: ...


class Launched(Protocol):
    """The profiles of a user whose lock is live now; DependencyUnavailable naming the state's
    store when it does not answer."""

    def __call__(self, user_id: uuid.UUID, /) -> Awaitable[set[uuid.UUID]]: ...


class Live:
    """main's reads: the data from base, what is live from the launched state."""

    def __init__(self, base: Profiles, launched: Launched) -> None:
        self.base = base
        self.launched_of = launched

    async def all_profiles(self) -> AsyncIterator[Profile]:
        """Every profile, one page from base at a time."""
        page: str | None = None
        while True:
            got = await self.base.profiles(PAGE, page)
            for profile in got.items:
                yield profile
            if got.next is None:
                return
            page = got.next

    async def suggested(self) -> list[SuggestedUser]:
        """Users bound to two or more profiles, from every profile."""
        return suggest([p async for p in self.all_profiles()])

    async def launched(self, user_id: uuid.UUID) -> list[uuid.UUID]:
        """The user's profiles (from base) that hold a live lock now, sorted. base is asked
        first, so an unknown user is its 404 whatever the state's store answers."""
        profiles = await self.base.profiles_of_user(user_id)
        live = await self.launched_of(user_id)
        return sorted(p.id for p in profiles if p.id in live)
