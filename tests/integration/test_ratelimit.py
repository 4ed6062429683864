"""The Redis rate limiter (adapters/ratelimit) on a real redis-server: GCRA, atomic, shared."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kubescaler.adapters import redis_client
from kubescaler.adapters.ratelimit import RateLimiter
from kubescaler.domain.admission import Limit
from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.settings import RedisSettings
from kubescaler_dev.proc import free_port
from kubescaler_dev.redis import RedisServer

pytestmark = pytest.mark.integration


def limit(count: int, period_ms: int, what: str = "session") -> Limit:
    return Limit(f"kubescaler:ratelimit:test:{uuid.uuid4().hex}", count, period_ms, what)


def limiter(server: RedisServer) -> RateLimiter:
    return RateLimiter(
        redis_client.connect(RedisSettings(url=server.url, **server.login("stream")))
    )


async def test_a_burst_passes_then_one_per_interval(redis_server: RedisServer) -> None:
    """3 per 1.5 s: three at once pass, the fourth waits about 0.5 s, then passes again."""
    rl = limiter(redis_server)
    lim = limit(3, 1500)
    assert [await rl.take([lim]) for _ in range(3)] == [None, None, None]
    refused = await rl.take([lim])
    assert refused is not None
    assert refused[0] == lim
    assert 400 <= refused[1] <= 500
    await asyncio.sleep(refused[1] / 1000 + 0.05)
    assert await rl.take([lim]) is None
    assert await rl.take([lim]) is not None
    await rl.aclose()


async def test_a_refusal_by_one_limit_spends_nothing_of_the_other(
    redis_server: RedisServer,
) -> None:
    """A request both limits count: when one refuses, the other keeps its whole budget."""
    rl = limiter(redis_server)
    tight, roomy = limit(1, 10_000, "session"), limit(2, 10_000, "address")
    assert await rl.take([tight, roomy]) is None  # roomy: 1 of 2 spent
    for _ in range(5):
        refused = await rl.take([tight, roomy])
        assert refused is not None
        assert refused[0] == tight
    assert await rl.take([roomy]) is None  # its second slot is still there
    assert await rl.take([roomy]) is not None
    await rl.aclose()


async def test_instances_share_one_budget_even_at_the_same_moment(
    redis_server: RedisServer,
) -> None:
    """Two limiters (two instances) racing 40 takes at once let exactly the limit through."""
    a, b = limiter(redis_server), limiter(redis_server)
    lim = limit(10, 60_000)
    results = await asyncio.gather(*(rl.take([lim]) for rl in [a, b] * 20))
    assert sum(r is None for r in results) == 10
    await a.aclose()
    await b.aclose()


async def test_keys_expire_with_their_budget(redis_server: RedisServer) -> None:
    """A key lives no longer than it matters (at most the period), so idle clients cost nothing."""
    rl = limiter(redis_server)
    lim = limit(5, 2000)
    await rl.take([lim])
    admin = redis_server.client()  # the stream's user may not ask a key's TTL
    ttl = admin.pttl(lim.key)
    admin.close()
    assert 0 < ttl <= 2000
    await rl.aclose()


async def test_redis_down_is_503_naming_redis() -> None:
    """No Redis to count with: DependencyUnavailable("redis"), not a silent pass."""
    nowhere = RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    rl = RateLimiter(redis_client.connect(nowhere))
    with pytest.raises(DependencyUnavailable, match="rate limit") as caught:
        await rl.take([limit(1, 1000)])
    assert caught.value.dependency == "redis"
    await rl.aclose()


async def test_takes_asked_together_share_a_script_call_each_all_or_nothing(
    redis_server: RedisServer,
) -> None:
    """60 takes asked at once leave in a few script calls, not 60, and each is still its own
    all-or-nothing take: of the ones that also count a tight shared limit, exactly its count
    pass, and a refused one spends nothing of its roomy limit."""
    rl = limiter(redis_server)
    calls = 0
    run = rl._script

    async def counted(**kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return await run(**kwargs)  # type: ignore[arg-type]

    rl._script = counted  # type: ignore[assignment]
    shared = limit(5, 60_000, "address")
    own = [limit(1, 60_000) for _ in range(60)]
    results = await asyncio.gather(*(rl.take([mine, shared]) for mine in own))
    assert calls <= 4, f"{calls} script calls for 60 takes"
    assert sum(r is None for r in results) == 5
    assert all(r[0] == shared for r in results if r is not None)
    # the refused takes spent nothing of their own limit: each still has its one slot
    refused = [mine for mine, r in zip(own, results, strict=True) if r is not None]
    assert [await rl.take([mine]) for mine in refused] == [None] * len(refused)
    await rl.aclose()
