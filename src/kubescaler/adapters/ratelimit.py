"""Rate limits kept in Redis, so every instance counts against the same budget.

The generic cell rate algorithm (GCRA): a limit of N per period P lets N through at once, then
one every P/N, and needs one number per key, the "theoretical arrival time" (TAT) of the next
request. A request at ``now`` passes when ``max(TAT, now) + P/N - P <= now`` and then moves the
TAT on by P/N; when it does not pass, the difference is exactly how long to wait (Retry-After).

One script checks every limit of a request and moves them on only if all of them pass, with
Redis' own clock, atomically: two instances taking the last slot at the same moment cannot both
get it, and a request one limit refuses spends nothing of the others. (Litestar's rate-limit
middleware reads, then writes, its store: across instances that is a race, and it has one key
per middleware.)
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from kubescaler.domain.admission import Limit
from kubescaler.domain.errors import DependencyUnavailable

_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tats = {}
local refused, wait = 0, 0
for i, key in ipairs(KEYS) do
  local count, period = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local tat = math.max(tonumber(redis.call('GET', key) or now), now)
  local after = tat + period / count
  local allow_at = after - period
  if allow_at > now and allow_at - now > wait then
    refused, wait = i, allow_at - now
  end
  tats[i] = after
end
if refused > 0 then
  return {refused, math.ceil(wait)}
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%.3f', tats[i]), 'PX', math.ceil(tats[i] - now))
end
return {0, 0}
"""


class RateLimiter:
    """Takes one request's worth of several limits at once, or says which refused and for how
    long."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(_GCRA)

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def take(self, limits: Sequence[Limit]) -> tuple[Limit, int] | None:
        """None when every limit had room (each is spent once); else (the limit that refused
        with the longest wait, that wait in ms). DependencyUnavailable when Redis does not
        answer."""
        if not limits:
            return None
        args: list[int] = []
        for limit in limits:
            args += [limit.count, limit.period_ms]
        try:
            refused, wait_ms = await self._script(keys=[lim.key for lim in limits], args=args)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis", f"cannot check the rate limit: {exc}") from exc
        if not refused:
            return None
        return limits[int(refused) - 1], int(wait_ms)
