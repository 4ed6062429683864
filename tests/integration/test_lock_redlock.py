"""Redlock over three real masters: quorum with one down, a clear refusal with two down."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from kubescaler.adapters.redlock import READY_KEY, Redlock, master_client
from kubescaler.adapters.redlock_recovery import SINCE_KEY, MasterRecovery, counters
from kubescaler.domain.errors import DependencyUnavailable
from kubescaler_dev.redis import RedisServer, stopped

pytestmark = pytest.mark.integration


@pytest.fixture
async def redlock(redis_masters: list[RedisServer]) -> AsyncIterator[Redlock]:
    lock = Redlock(
        [master_client(m.url, 0.25, **m.login()) for m in redis_masters],
        5000,
        0.01,
        250,
    )
    await MasterRecovery(lock.masters, 5000, 0.25).step()  # they vote once brought in
    yield lock
    await lock.aclose()


async def test_owner_only_extends_and_releases(redlock: Redlock) -> None:
    """Extend and release succeed only for the token that holds the key."""
    key = f"t:{uuid.uuid4()}"
    assert (await redlock.acquire(key, "a")).ok
    held = await redlock.acquire(key, "b")
    assert held.status == "held"
    assert held.holder == "a"
    assert 0 < held.holder_ttl_ms <= 5000
    assert (await redlock.extend(key, "b")).status == "held"
    assert (await redlock.release(key, "b")).wins == 0
    assert (await redlock.extend(key, "a")).ok
    assert (await redlock.release(key, "a")).wins == 3
    assert (await redlock.acquire(key, "b")).ok


async def test_one_master_down_still_grants(
    redlock: Redlock, redis_masters: list[RedisServer]
) -> None:
    """Two of three masters are a quorum."""
    with stopped(redis_masters[:1]):
        got = await redlock.acquire(f"t:{uuid.uuid4()}", "a")
        assert got.ok
        assert got.answered == 2


async def test_ready_while_a_quorum_of_masters_answers(
    redlock: Redlock, redis_masters: list[RedisServer]
) -> None:
    """The keeper's readiness: one master down of three is ready; two down name the silent."""
    with stopped(redis_masters[:1]):
        await redlock.ready()
    with stopped(redis_masters[:2]), pytest.raises(DependencyUnavailable) as caught:
        await redlock.ready()
    assert caught.value.dependency == "redlock"
    assert "lock quorum unavailable: 127.0.0.1:" in caught.value.message
    await redlock.ready()


async def test_a_hung_master_costs_one_timeout_not_a_hang(
    redlock: Redlock, redis_masters: list[RedisServer]
) -> None:
    """A master that accepts but never answers (SIGSTOP) is skipped after the call timeout."""
    redis_masters[0].signal(signal.SIGSTOP)
    try:
        start = time.monotonic()
        got = await redlock.acquire(f"t:{uuid.uuid4()}", "a")
        elapsed = time.monotonic() - start
    finally:
        redis_masters[0].signal(signal.SIGCONT)
    assert got.ok
    assert elapsed < 1.0
    assert await redlock.ping() == []


async def test_the_token_bound_keeps_an_older_grant_from_releasing_a_newer_one(
    redlock: Redlock, redis_masters: list[RedisServer]
) -> None:
    """On real masters: the value is owner#bound; re-entry keeps the higher bound, a refresh
    raises it to its token, a release below it frees nothing, one at or above it frees the key;
    a value written before bounds existed is the owner's, bound 0."""
    key = f"t:{uuid.uuid4()}"
    assert (await redlock.acquire(key, "a", 5)).ok
    assert (await redlock.acquire(key, "a", 3)).ok  # re-entry: the bound stays 5
    assert (await redlock.release(key, "a", 4)).wins == 0
    assert (await redlock.extend(key, "a", 7)).ok
    assert (await redlock.release(key, "a", 6)).wins == 0
    assert (await redlock.release(key, "a", 7)).wins == 3
    legacy = f"t:{uuid.uuid4()}"
    for master in redis_masters:
        client = Redis.from_url(master.url, **master.login())
        await client.set(legacy, "a", px=5000)
        await client.aclose()
    assert (await redlock.acquire(legacy, "b")).holder == "a"
    assert (await redlock.release(legacy, "a", 9)).wins == 3


async def test_a_master_wiped_abstains_until_a_lock_lifetime_then_votes_with_the_counters(
    redis_masters: list[RedisServer],
) -> None:
    """FLUSHALL on one master (its data lost): it answers "recovering" to every op, so grants
    need the other two; recovery notes the time, and once a lock's lifetime (here 1 s) has
    passed copies the highest counters of the others into it and lets it vote again."""
    ttl = 1000
    clients = [master_client(m.url, 0.25, **m.login()) for m in redis_masters]
    lock = Redlock(clients, ttl, 0.01, 250, key_prefix="p:")
    recovery = MasterRecovery(clients, ttl, 0.25)
    await recovery.step()
    key = f"t:{uuid.uuid4()}"
    try:
        await clients[1].set(f"kubescaler:lock:fence:{key}", 7)
        await clients[2].set(f"kubescaler:lock:fence:{key}", 9)
        await clients[0].flushall()
        got = await lock.acquire(key, "a")
        assert got.ok
        assert got.wins == 2  # the wiped one abstained
        assert "recovering" in (await lock.extend(key, "a")).error
        assert await recovery.step() == ["note", "ready", "ready"]
        assert await clients[0].get(SINCE_KEY) is not None
        assert (await recovery.step())[0] == "wait"
        await asyncio.sleep(ttl / 1000)
        assert (await recovery.step())[0] == "catch up"
        assert await clients[0].get(READY_KEY) == b"1"
        assert (await counters(clients[0]))[f"kubescaler:lock:fence:{key}"] == 9
        assert (await lock.acquire(key, "a")).wins == 3
    finally:
        await lock.aclose()


async def test_a_failed_acquire_frees_only_the_keys_it_took(
    redlock: Redlock, redis_masters: list[RedisServer]
) -> None:
    """On real masters: an acquire reports where it took the key (not where its owner
    re-entered). One that fails - here with two masters down - frees only those: a session's
    failed re-entry leaves the key of its earlier, live grant where it was; a fresh one that
    won one master gives it back."""
    held, fresh = f"t:{uuid.uuid4()}", f"t:{uuid.uuid4()}"
    assert (await redlock.acquire(held, "a")).took == (0, 1, 2)
    again = await redlock.acquire(held, "a")
    assert (again.won, again.took) == ((0, 1, 2), ())
    with stopped(redis_masters[1:]):
        failed = await redlock.acquire(held, "a")
        assert not failed.ok
        assert failed.won == (0,)
        assert await redlock.masters[0].get(held) is not None, "the earlier grant's key freed"
        lost = await redlock.acquire(fresh, "b")
        assert (lost.ok, lost.took) == (False, (0,))
        assert await redlock.masters[0].get(fresh) is None
