"""Redlock over N independent Redis masters, with caller-supplied tokens.

The token stored on every master is the owner's session id, so any stateless worker can
extend or release a lock another worker took, and the same owner re-acquiring its own lock is
granted (re-entrant). Each operation runs on all masters at once, each call bounded by a
timeout; a master that errors or times out counts as unavailable, never as a hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

# Returns {1, 0} when set (or re-entered by the same token), {0, pttl, holder} otherwise.
_ACQUIRE = """
local v = redis.call('GET', KEYS[1])
if not v or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, 0, ''}
end
return {0, redis.call('PTTL', KEYS[1]), v}
"""
# Returns 1 when the token still owns the key and its TTL was reset, 0 otherwise.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# Returns 1 when the token owned the key and it was deleted, 0 otherwise.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

Status = Literal["ok", "held", "unavailable"]


@dataclass(frozen=True, slots=True)
class RedlockResult:
    """One Redlock operation's result over all masters.

    ``status`` is ok (quorum reached), held (another token holds it on enough masters that
    quorum is impossible) or unavailable (too few masters answered to decide).
    ``validity_ms`` counts from ``started_ms`` (epoch ms). ``holder`` and ``holder_ttl_ms``
    describe the other token on a held lock.
    """

    status: Status
    started_ms: int
    validity_ms: int = 0
    holder: str = ""
    holder_ttl_ms: int = 0
    answered: int = 0
    touched: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def expires_at_ms(self) -> int:
        return self.started_ms + self.validity_ms


def master_client(url: str, timeout_s: float) -> Redis:
    """A client for one master: short socket timeouts, one immediate retry on a dropped
    connection only (a pooled connection a restarted master closed). A master that is down
    or slow is not retried: Redlock decides by quorum, and each call is bounded anyway."""
    return Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
        decode_responses=False,
    )


class Redlock:
    def __init__(
        self, masters: list[Redis], ttl_ms: int, drift_factor: float, call_timeout_ms: int
    ) -> None:
        self.masters = masters
        self.ttl_ms = ttl_ms
        self.drift_factor = drift_factor
        self.call_timeout_s = call_timeout_ms / 1000
        self.quorum = len(masters) // 2 + 1
        self._acquire = [m.register_script(_ACQUIRE) for m in masters]
        self._extend = [m.register_script(_EXTEND) for m in masters]
        self._release = [m.register_script(_RELEASE) for m in masters]

    async def _each(self, calls: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
        async def one(call: Callable[[], Awaitable[Any]]) -> Any:
            try:
                async with asyncio.timeout(self.call_timeout_s):
                    return await call()
            except Exception as exc:
                return exc

        return list(await asyncio.gather(*(one(c) for c in calls)))

    def _validity(self, start: float) -> int:
        elapsed = int((time.monotonic() - start) * 1000)
        drift = int(self.ttl_ms * self.drift_factor) + 2
        return self.ttl_ms - elapsed - drift

    def _decide(self, wins: int, refusals: int) -> Status:
        if wins >= self.quorum:
            return "ok"
        # Refusals by another owner make quorum impossible even if every silent master agreed.
        if refusals > len(self.masters) - self.quorum:
            return "held"
        return "unavailable"

    async def acquire(self, key: str, token: str) -> RedlockResult:
        started_ms, start = time.time_ns() // 1_000_000, time.monotonic()
        replies = await self._each(
            [partial(s, keys=[key], args=[token, self.ttl_ms]) for s in self._acquire]
        )
        wins, refused = 0, []
        for reply in replies:
            if isinstance(reply, Exception):
                continue
            if int(reply[0]) == 1:
                wins += 1
            else:
                refused.append((int(reply[1]), reply[2].decode()))
        answered = wins + len(refused)
        status = self._decide(wins, len(refused))
        validity = self._validity(start)
        if status == "ok" and validity > 0:
            return RedlockResult("ok", started_ms, validity, answered=answered, touched=wins)
        await self.release(key, token)
        if status == "ok":
            status = "unavailable"
        ttl, holder = max(refused, default=(0, ""))
        return RedlockResult(
            status,
            started_ms,
            holder=holder,
            holder_ttl_ms=max(ttl, 0),
            answered=answered,
            error=_first_error(replies),
        )

    async def extend(self, key: str, token: str) -> RedlockResult:
        """Reset the TTL where ``token`` still owns ``key``; ok only on a quorum."""
        started_ms, start = time.time_ns() // 1_000_000, time.monotonic()
        replies = await self._each(
            [partial(s, keys=[key], args=[token, self.ttl_ms]) for s in self._extend]
        )
        answers = [int(r) for r in replies if not isinstance(r, Exception)]
        wins = sum(answers)
        status = self._decide(wins, len(answers) - wins)
        validity = self._validity(start)
        if status == "ok" and validity <= 0:
            status = "unavailable"
        return RedlockResult(
            status,
            started_ms,
            validity if status == "ok" else 0,
            answered=len(answers),
            touched=wins,
            error=_first_error(replies),
        )

    async def release(self, key: str, token: str) -> RedlockResult:
        """Delete ``key`` wherever ``token`` owns it. ok when a quorum answered."""
        started_ms = time.time_ns() // 1_000_000
        replies = await self._each([partial(s, keys=[key], args=[token]) for s in self._release])
        answers = [int(r) for r in replies if not isinstance(r, Exception)]
        status: Status = "ok" if len(answers) >= self.quorum else "unavailable"
        return RedlockResult(
            status,
            started_ms,
            answered=len(answers),
            touched=sum(answers),
            error=_first_error(replies),
        )

    async def ping(self) -> list[str]:
        """Addresses of the masters that do not answer PING."""
        replies = await self._each([m.ping for m in self.masters])
        return [
            _address(m)
            for m, r in zip(self.masters, replies, strict=True)
            if isinstance(r, Exception)
        ]

    async def aclose(self) -> None:
        for master in self.masters:
            await master.aclose()


def _address(client: Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


def _first_error(replies: list[Any]) -> str:
    for reply in replies:
        if isinstance(reply, Exception):
            return f"{type(reply).__name__}: {reply}"
    return ""
