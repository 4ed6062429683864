"""What main answers from base's data and the lock state: suggested users and live profiles."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from kubescaler.adapters import lockstate
from kubescaler.adapters.base_client import BaseClient
from kubescaler.domain.models import Profile, SuggestedUser
from kubescaler.domain.testdata import suggested as suggest

PAGE = 1000


async def all_profiles(base: BaseClient) -> AsyncIterator[Profile]:
    """Every profile, one page from base at a time."""
    page: str | None = None
    while True:
        got = await base.profiles(PAGE, page)
        for profile in got.items:
            yield profile
        if got.next is None:
            return
        page = got.next


async def suggested(base: BaseClient) -> list[SuggestedUser]:
    return suggest([p async for p in all_profiles(base)])


async def launched(base: BaseClient, redis: aioredis.Redis, user_id: uuid.UUID) -> list[uuid.UUID]:
    """The user's profiles (from base) that hold a live lock now (from Redis), sorted."""
    profiles = await base.profiles_of_user(user_id)
    live = await lockstate.launched_profiles(redis, user_id)
    return sorted(p.id for p in profiles if p.id in live)
