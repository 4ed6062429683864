"""The lock state readers use, kept in the stream Redis by the lock-keeper.

Key layout (all on ``settings.redis.url``):

- ``kubescaler:launched:{user}:{profile}`` - the launched marker, value = owner, TTL = lock TTL.
- ``kubescaler:launched-profiles:{user}`` - sorted set, member = profile id, score = the
  lock's expiry (epoch ms); readers ignore entries whose score is in the past. The key itself
  lapses one TTL after its last write.
- ``kubescaler:lock:fence:{user}:{profile}`` - the pair's fencing counter (never expires).
- ``kubescaler:lock:applied:{request_id}`` - an applied command's outcome (idempotence).
"""

from __future__ import annotations

import uuid
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.domain.locks import LockOutcome, now_ms, pair_name

PREFIX = "kubescaler"

#: The Redlock key of a pair on every master is this prefix and the pair (``user:profile``).
LOCK_PREFIX = f"{PREFIX}:lock:pair:"


def lock_key(user_id: uuid.UUID, profile_id: uuid.UUID) -> str:
    """The Redlock key on every master (what the keeper's Redlock writes for the pair)."""
    return LOCK_PREFIX + pair_name(user_id, profile_id)


#: Outcomes for one requester are published on a channel named by this prefix, its process
#: name and a per-client suffix.
REPLY_PREFIX = f"{PREFIX}:lock:reply:"


def reply_channel(requester: str) -> str:
    """The reply channel of one requester (``{requester}`` in the AsyncAPI document)."""
    return f"{REPLY_PREFIX}{requester}"


def marker_key(user_id: uuid.UUID, profile_id: uuid.UUID) -> str:
    return f"{PREFIX}:launched:{user_id}:{profile_id}"


def user_key(user_id: uuid.UUID) -> str:
    return f"{PREFIX}:launched-profiles:{user_id}"


#: A pair's fencing counter: on every Redlock master (quorum fencing) and, in the older
#: "stream" fencing, on the stream Redis; never expires.
FENCE_PREFIX = f"{PREFIX}:lock:fence:"


def fence_key(user_id: uuid.UUID, profile_id: uuid.UUID) -> str:
    return FENCE_PREFIX + pair_name(user_id, profile_id)


def applied_key(request_id: str) -> str:
    return f"{PREFIX}:lock:applied:{request_id}"


def state_change(out: LockOutcome, freed: bool) -> str:
    """What ``out`` does to the launched state: ``hold`` (granted or refreshed: mark it until
    ``expires_at_ms``), ``unmark`` (a release that freed the pair: unmark it while the marker
    still names the owner) or nothing."""
    if out.result in ("granted", "refreshed"):
        return "hold"
    if out.result == "released" and freed:
        return "unmark"
    return ""


async def launched_profiles(redis: Redis, user_id: uuid.UUID) -> set[uuid.UUID]:
    """The profiles of ``user_id`` whose lock is live now. Redis down -> DependencyUnavailable."""
    try:
        members: list[Any] = await redis.zrangebyscore(user_key(user_id), now_ms(), "+inf")
    except (RedisError, OSError) as exc:
        raise DependencyUnavailable("redis", f"launched profiles: {exc}") from exc
    return {uuid.UUID(m.decode() if isinstance(m, bytes) else m) for m in members}


async def is_launched(redis: Redis, user_id: uuid.UUID, profile_id: uuid.UUID) -> bool:
    try:
        return bool(await redis.exists(marker_key(user_id, profile_id)))
    except (RedisError, OSError) as exc:
        raise DependencyUnavailable("redis", f"launched marker: {exc}") from exc
