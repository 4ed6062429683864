"""Redlock masters that came back empty, caught up before they vote again.

A master votes only while it holds its ready marker (``redlock.READY_KEY``; the vote script
answers "recovering" without it). One that lost its data - a wiped volume, a restored backup,
a new pod on an empty disk - has none, so it abstains from the moment it is back. Every
lock-keeper runs :meth:`MasterRecovery.step` every second; what it does for each master is
``domain/lockrules.recovery``'s decision:

- notes, on the master's own clock, when it was first seen empty;
- once a lock's lifetime has passed since then (every lock it might have held has lapsed, or
  was refreshed on the others) and every other master answers and is ready: copies the
  highest fencing counter of every pair from the others into it, then sets its marker;
- a new deployment, where no master is ready yet: seeds every master with the stream Redis's
  counters (what tokens were before quorum fencing) and makes them ready together.

Keepers may do this side by side: every step is idempotent (a counter is only ever raised).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from kubescaler.adapters.lockstate import FENCE_PREFIX
from kubescaler.adapters.redlock import READY_KEY
from kubescaler.domain.recovery import MasterState, Recovery, recovery

log = logging.getLogger(__name__)

#: When a master that came back empty was first seen so (its own clock, ms).
SINCE_KEY = "kubescaler:lock:recovering-since"
#: Counters copied per script call (a script holds its Redis while it runs).
CHUNK = 500

_STATE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return {redis.call('EXISTS', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0'), now}
"""
_NOTE = """
local t = redis.call('TIME')
redis.call('SET', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000), 'NX')
return 1
"""
_RAISE = """
for i, key in ipairs(KEYS) do
  local v = tonumber(ARGV[i])
  if tonumber(redis.call('GET', key) or '0') < v then redis.call('SET', key, v) end
end
return #KEYS
"""


class MasterRecovery:
    def __init__(
        self,
        masters: Sequence[Redis],
        ttl_ms: int,
        timeout_s: float,
        seed: Redis | None = None,
        report: Callable[[Sequence[MasterState | None]], None] = lambda _: None,
    ) -> None:
        """``seed``: the stream Redis, whose counters a new deployment starts from;
        ``report``: what each step saw of every master (None: it did not answer)."""
        self.report = report
        self.masters = list(masters)
        self.ttl_ms = ttl_ms
        self.timeout_s = timeout_s
        self.seed = seed

    async def state(self, master: Redis) -> MasterState | None:
        try:
            async with asyncio.timeout(self.timeout_s):
                ready, since, now = await master.eval(_STATE, 2, READY_KEY, SINCE_KEY)
        except Exception:
            return None
        return MasterState(ready=bool(int(ready)), since_ms=int(since), now_ms=int(now))

    async def step(self) -> list[Recovery]:
        """One look at every master, and what it called for done."""
        states = await asyncio.gather(*(self.state(m) for m in self.masters))
        self.report(states)
        plan = recovery(states, self.ttl_ms)
        if "bootstrap" in plan:
            seed = await counters(self.seed) if self.seed is not None else {}
            for master, what in zip(self.masters, plan, strict=True):
                if what == "bootstrap":
                    await raise_counters(master, seed)
                    await master.set(READY_KEY, "1")
            log.warning("Redlock masters started: %d fencing counters seeded", len(seed))
            return plan
        for i, (master, what) in enumerate(zip(self.masters, plan, strict=True)):
            if what == "note":
                await master.eval(_NOTE, 1, SINCE_KEY)
                log.warning("Redlock master %d came back empty: it abstains until caught up", i)
            elif what == "catch up":
                others = [m for j, m in enumerate(self.masters) if j != i]
                highest: dict[str, int] = {}
                for got in await asyncio.gather(*(counters(m) for m in others)):
                    for key, value in got.items():
                        highest[key] = max(value, highest.get(key, 0))
                await raise_counters(master, highest)
                await master.set(READY_KEY, "1")
                await master.delete(SINCE_KEY)
                log.warning(
                    "Redlock master %d caught up (%d counters): it votes again", i, len(highest)
                )
        return plan

    async def run(self, every_s: float = 1.0) -> None:
        """Forever: a step every ``every_s`` (a failing step is logged and tried again)."""
        while True:
            try:
                await self.step()
            except Exception:
                log.exception("Redlock master recovery step failed")
            await asyncio.sleep(every_s)


async def counters(client: Redis) -> dict[str, int]:
    """Every pair's fencing counter on one Redis."""
    found: dict[str, int] = {}
    keys: list[bytes] = []
    async for key in client.scan_iter(match=f"{FENCE_PREFIX}*", count=1000):
        keys.append(key)
    for i in range(0, len(keys), CHUNK):
        chunk = keys[i : i + CHUNK]
        for key, value in zip(chunk, await client.mget(chunk), strict=True):
            if value is not None:
                found[key.decode() if isinstance(key, bytes) else str(key)] = int(value)
    return found


async def raise_counters(client: Redis, values: dict[str, int]) -> None:
    """Raise each counter on ``client`` to at least its value (never lower one)."""
    items = list(values.items())
    for i in range(0, len(items), CHUNK):
        chunk = items[i : i + CHUNK]
        await client.eval(_RAISE, len(chunk), *(k for k, _ in chunk), *(v for _, v in chunk))
