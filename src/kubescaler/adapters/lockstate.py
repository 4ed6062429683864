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
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.domain.locks import LockOutcome, now_ms

PREFIX = "kubescaler"

# Delete the marker and the user's entry only while the marker still names this owner.
_UNMARK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


def lock_key(user_id: uuid.UUID, profile_id: uuid.UUID) -> str:
    """The Redlock key on every master."""
    return f"{PREFIX}:lock:pair:{user_id}:{profile_id}"


def marker_key(user_id: uuid.UUID, profile_id: uuid.UUID) -> str:
    return f"{PREFIX}:launched:{user_id}:{profile_id}"


def user_key(user_id: uuid.UUID) -> str:
    return f"{PREFIX}:launched-profiles:{user_id}"


def fence_key(user_id: uuid.UUID, profile_id: uuid.UUID) -> str:
    return f"{PREFIX}:lock:fence:{user_id}:{profile_id}"


def applied_key(request_id: str) -> str:
    return f"{PREFIX}:lock:applied:{request_id}"


def stage_outcome(pipe: Pipeline, out: LockOutcome, ttl_ms: int, released: bool) -> None:
    """Queue on ``pipe`` the state change ``out`` implies."""
    marker, users = marker_key(out.user_id, out.profile_id), user_key(out.user_id)
    if out.result in ("granted", "refreshed"):
        pipe.set(marker, out.owner, px=ttl_ms)
        pipe.zadd(users, {str(out.profile_id): out.expires_at_ms})
        pipe.zremrangebyscore(users, "-inf", f"({out.at_ms}")
        pipe.pexpire(users, ttl_ms)
    elif out.result == "released" and released:
        pipe.eval(_UNMARK, 2, marker, users, out.owner, str(out.profile_id))


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
