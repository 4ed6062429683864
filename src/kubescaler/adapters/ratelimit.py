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

Takes asked in the same moment travel together (:mod:`~kubescaler.adapters.coalesce`): a
burst of 200 opens costs Redis a few script calls and the stream process a few round trips
and pooled connections, not one each.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from kubescaler.adapters.coalesce import Coalescer
from kubescaler.domain.admission import Limit
from kubescaler.domain.errors import DependencyUnavailable

# KEYS: every request's keys in turn; ARGV: per request its number of limits, then each
# limit's count and period (ms). Requests are taken in order, each all or nothing; per request
# the reply holds {refused, wait}: 0, 0 when it passed, else the refusing limit's position in
# the request (from 1) and the wait in ms.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local out = {}
local k, a = 0, 1
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  local tats = {}
  local refused, wait = 0, 0
  for i = 1, n do
    local count, period = tonumber(ARGV[a + 2 * i - 1]), tonumber(ARGV[a + 2 * i])
    local tat = math.max(tonumber(redis.call('GET', KEYS[k + i]) or now), now)
    local after = tat + period / count
    local allow_at = after - period
    if allow_at > now and allow_at - now > wait then
      refused, wait = i, allow_at - now
    end
    tats[i] = after
  end
  if refused == 0 then
    for i = 1, n do
      redis.call('SET', KEYS[k + i], string.format('%.3f', tats[i]), 'PX', math.ceil(tats[i] - now))
    end
  end
  out[#out + 1] = refused
  out[#out + 1] = math.ceil(wait)
  k, a = k + n, a + 2 * n + 1
end
return out
"""

#: Most script calls in flight at once: takes arriving meanwhile leave together in the next.
IN_FLIGHT = 2
#: Most takes one script call applies: a script holds Redis for its whole run.
MOST_TAKES = 500


class RateLimiter:
    """Takes one request's worth of several limits at once, or says which refused and for how
    long. Takes asked in the same moment (a burst of opens) share one script call, applied in
    order, each all or nothing."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(_GCRA)
        self._takes = Coalescer(self._run, IN_FLIGHT, MOST_TAKES)

    async def aclose(self) -> None:
        await self._takes.aclose()
        await self.redis.aclose()

    async def take(self, limits: Sequence[Limit]) -> tuple[Limit, int] | None:
        """None when every limit had room (each is spent once); else (the limit that refused
        with the longest wait, that wait in ms). DependencyUnavailable when Redis does not
        answer."""
        if not limits:
            return None
        refused, wait_ms = await self._takes(limits)
        if not refused:
            return None
        return limits[refused - 1], wait_ms

    async def _run(self, takes: list[Sequence[Limit]]) -> list[tuple[int, int]]:
        """One script call for every take asked together: each one's (refused, wait)."""
        keys: list[str] = []
        args: list[int] = []
        for limits in takes:
            keys += [lim.key for lim in limits]
            args.append(len(limits))
            for limit in limits:
                args += [limit.count, limit.period_ms]
        try:
            got = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis", f"cannot check the rate limit: {exc}") from exc
        return [(int(got[i]), int(got[i + 1])) for i in range(0, len(got), 2)]
