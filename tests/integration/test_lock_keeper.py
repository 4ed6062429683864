"""The lock-keeper end to end: real redis-servers, in-process workers, the event path."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis

from kubescaler.adapters.lockclient import LockClient
from kubescaler.adapters.lockstate import is_launched, launched_profiles
from kubescaler.domain.errors import Conflict, DependencyUnavailable
from kubescaler.domain.locks import LockRecord, record_from_fields, verify
from kubescaler.entrypoints.lock_keeper import Worker
from kubescaler.settings import LockSettings, RedisSettings, Settings
from kubescaler_dev.redis import RedisServer, stopped

pytestmark = pytest.mark.integration


def make_settings(redis_server: RedisServer, masters: list[RedisServer], **lock: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(
        instance=f"t-{tag}",
        redis=RedisSettings(
            url=redis_server.url, lock_urls=[m.url for m in masters], **redis_server.login()
        ),
        lock=LockSettings(command_stream=f"t:{tag}:cmd", log_stream=f"t:{tag}:log", **lock),
    )


@asynccontextmanager
async def keepers(settings: Settings, n: int = 1) -> AsyncIterator[list[Worker]]:
    async with AsyncExitStack() as stack:
        workers = []
        for i in range(n):
            worker = Worker(settings, name=f"{settings.instance}-w{i}")
            await worker.start()
            stack.push_async_callback(worker.stop)
            workers.append(worker)
        yield workers


async def history(redis: Redis, settings: Settings) -> list[LockRecord]:
    entries = await redis.xrange(settings.lock.log_stream)
    return [record_from_fields(fields, log_id.decode()) for log_id, fields in entries]


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, **redis_server.login())
    yield client
    await client.aclose()


async def test_acquire_refresh_release_round_trip(
    redis_server: RedisServer, redis_masters: list[RedisServer], redis: Redis
) -> None:
    """A grant carries a fencing token and marks the pair launched; release clears both."""
    settings = make_settings(redis_server, redis_masters)
    user, profile = uuid.uuid4(), uuid.uuid4()
    async with keepers(settings), LockClient(settings) as locks:
        got = await locks.acquire(user, profile, "alice")
        assert got.result == "granted"
        assert got.fencing_token >= 1
        assert await launched_profiles(redis, user) == {profile}
        assert await is_launched(redis, user, profile)
        with pytest.raises(Conflict):
            await locks.acquire(user, profile, "bob")
        again = await locks.acquire(user, profile, "alice")
        assert again.fencing_token > got.fencing_token
        assert (await locks.refresh(user, profile, "alice")).result == "refreshed"
        assert (await locks.refresh(user, profile, "bob")).result == "lost"
        assert (await locks.release(user, profile, "alice")).result == "released"
        assert await launched_profiles(redis, user) == set()
        assert (await locks.acquire(user, profile, "bob")).result == "granted"
    records = await history(redis, settings)
    assert [r.result for r in records] == [
        "granted",
        "denied",
        "granted",
        "refreshed",
        "lost",
        "released",
        "granted",
    ]
    assert verify(records) == []


async def test_hundreds_of_acquirers_three_workers_one_holder_at_a_time(
    redis_server: RedisServer, redis_masters: list[RedisServer], redis: Redis
) -> None:
    """300 concurrent acquirers over 3 workers: never two holders, and the log verifies."""
    settings = make_settings(redis_server, redis_masters, request_timeout_ms=20_000)
    user, profile = uuid.uuid4(), uuid.uuid4()
    holding: set[str] = set()
    most = 0
    grants = 0

    async def contender(locks: LockClient, i: int) -> None:
        nonlocal most, grants
        owner = f"session-{i}"
        for _ in range(3):
            try:
                await locks.acquire(user, profile, owner)
            except Conflict:
                await asyncio.sleep(0.01)
                continue
            holding.add(owner)
            most = max(most, len(holding))
            grants += 1
            await asyncio.sleep(0.002)
            holding.discard(owner)
            await locks.release(user, profile, owner)
            return

    async with keepers(settings, 3) as workers, AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(LockClient(settings)) for _ in range(3)]
        await asyncio.gather(*(contender(clients[i % 3], i) for i in range(300)))
        served = {w.name for w in workers}
    records = await history(redis, settings)
    assert most == 1
    assert grants >= 2
    assert sum(r.result == "granted" for r in records) == grants
    assert {r.worker for r in records} == served  # every worker took part
    assert verify(records) == []


async def test_refresh_keeps_the_lock_and_without_it_the_lock_lapses(
    redis_server: RedisServer, redis_masters: list[RedisServer], redis: Redis
) -> None:
    """TTL 1 s: refreshed it outlives the TTL; unrefreshed it lapses and leaves the state."""
    settings = make_settings(redis_server, redis_masters, ttl_ms=1000)
    user, profile = uuid.uuid4(), uuid.uuid4()
    async with keepers(settings), LockClient(settings) as locks:
        await locks.acquire(user, profile, "alice")
        for _ in range(6):  # 1.8 s, well past the TTL
            await asyncio.sleep(0.3)
            assert (await locks.refresh(user, profile, "alice")).result == "refreshed"
        with pytest.raises(Conflict):
            await locks.acquire(user, profile, "bob")
        assert await launched_profiles(redis, user) == {profile}
        await asyncio.sleep(1.05)  # no refresh for one TTL
        assert await launched_profiles(redis, user) == set()
        assert not await is_launched(redis, user, profile)
        assert (await locks.refresh(user, profile, "alice")).result == "lost"
        bob = await locks.acquire(user, profile, "bob")
        assert bob.result == "granted"
        released = await locks.release(user, profile, "bob")
        assert released.result == "released"
        carol = await locks.acquire(user, profile, "carol")  # at once, no TTL wait
        assert carol.fencing_token > bob.fencing_token
    assert verify(await history(redis, settings)) == []


async def test_reconnect_of_the_same_owner_is_not_locked_out(
    redis_server: RedisServer, redis_masters: list[RedisServer]
) -> None:
    """The same session re-acquiring its own live lock is granted a new, larger token."""
    settings = make_settings(redis_server, redis_masters)
    user, profile = uuid.uuid4(), uuid.uuid4()
    async with keepers(settings), LockClient(settings) as locks:
        first = await locks.acquire(user, profile, "tab-1")
        second = await locks.acquire(user, profile, "tab-1")
        assert second.result == "granted"
        assert second.fencing_token > first.fencing_token


async def test_a_superseded_grant_cannot_refresh_or_release_the_newer_one(
    redis_server: RedisServer, redis_masters: list[RedisServer], redis: Redis
) -> None:
    """Same session granted twice: the older token's refresh is `lost` (superseded_by names the
    newer token) and its release frees nothing; the newer token refreshes, and the log verifies."""
    settings = make_settings(redis_server, redis_masters)
    user, profile = uuid.uuid4(), uuid.uuid4()
    async with keepers(settings), LockClient(settings) as locks:
        old = await locks.acquire(user, profile, "tab-1")
        new = await locks.acquire(user, profile, "tab-1")
        stale = await locks.refresh(user, profile, "tab-1", old.fencing_token)
        assert stale.result == "lost"
        assert stale.superseded_by == new.fencing_token
        assert f"superseded by fencing token {new.fencing_token}" in stale.detail
        fresh = await locks.refresh(user, profile, "tab-1", new.fencing_token)
        assert fresh.result == "refreshed"
        freed = await locks.release(user, profile, "tab-1", old.fencing_token)
        assert freed.result == "released"
        assert freed.superseded_by == new.fencing_token
        assert await is_launched(redis, user, profile)
        with pytest.raises(Conflict):  # the newer grant still holds the pair
            await locks.acquire(user, profile, "tab-2")
        assert (await locks.refresh(user, profile, "tab-1", new.fencing_token)).result == (
            "refreshed"
        )
    records = await history(redis, settings)
    assert [(r.result, r.fencing_token) for r in records if r.action != "acquire"] == [
        ("lost", old.fencing_token),
        ("refreshed", new.fencing_token),
        ("released", old.fencing_token),
        ("refreshed", new.fencing_token),
    ]
    assert verify(records) == []


async def test_command_past_its_deadline_is_expired_not_applied(
    redis_server: RedisServer, redis_masters: list[RedisServer], redis: Redis
) -> None:
    """A command nobody took before its deadline is answered "expired" and never applied."""
    settings = make_settings(redis_server, redis_masters)
    user, profile = uuid.uuid4(), uuid.uuid4()
    await redis.xgroup_create(
        settings.lock.command_stream, settings.lock.command_group, id="$", mkstream=True
    )
    async with LockClient(settings) as locks:
        with pytest.raises(DependencyUnavailable) as caught:
            await locks.send("acquire", user, profile, "late", timeout_ms=200)
        assert caught.value.dependency == "lock-keeper"
        async with keepers(settings):
            await wait_for(lambda: history(redis, settings), lambda rs: len(rs) == 1)
    (record,) = await history(redis, settings)
    assert record.result == "expired"
    assert await launched_profiles(redis, user) == set()


async def test_a_short_stall_of_redis_does_not_idle_the_keeper(
    redis_server: RedisServer, redis_masters: list[RedisServer]
) -> None:
    """The stream Redis stalls (SIGSTOP) for 3 s: longer than the socket timeout (2 s), so the
    keeper's blocked read times out, and shorter than its retries. The keeper retries the read
    instead of failing it into FastStream's fixed 5 s pause, so a command published right after
    the resume is answered at once (with the pause: 3 s or more later)."""
    settings = make_settings(redis_server, redis_masters, request_timeout_ms=15_000)
    assert settings.redis.timeout_s == 2.0
    async with keepers(settings), LockClient(settings) as locks:
        assert (await locks.acquire(uuid.uuid4(), uuid.uuid4(), "before")).result == "granted"
        redis_server.signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(3)
        finally:
            redis_server.signal(signal.SIGCONT)
        started = time.monotonic()
        after = await locks.send("acquire", uuid.uuid4(), uuid.uuid4(), "after")
        took = time.monotonic() - started
    assert after.result == "granted"
    assert took < 1.5, f"answered {took:.1f} s after the resume"


async def wait_for(fetch: Any, done: Any, timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            value = await fetch()
            if done(value):
                return value
            await asyncio.sleep(0.05)


async def test_a_reconnected_reply_channel_publishes_the_waiting_commands_again(
    redis_server: RedisServer, redis_masters: list[RedisServer], redis: Redis
) -> None:
    """A reply published while the client's channel was down is gone, so when the channel
    reconnects (here: its connection killed) the waiting command is published again with its
    request id; the keeper applies it once and answers the copy from its record."""
    settings = make_settings(redis_server, redis_masters, request_timeout_ms=20_000)
    lock = settings.lock
    await redis.xgroup_create(lock.command_stream, lock.command_group, id="$", mkstream=True)
    async with LockClient(settings) as locks:
        waiting = asyncio.create_task(locks.send("acquire", uuid.uuid4(), uuid.uuid4(), "o"))
        await wait_for(lambda: redis.xlen(lock.command_stream), lambda n: n == 1)
        await redis.client_kill_filter(_type="pubsub")
        await wait_for(lambda: redis.xlen(lock.command_stream), lambda n: n == 2)
        async with keepers(settings):
            outcome = await waiting
    assert outcome.result == "granted"
    entries = await redis.xrange(lock.command_stream)
    assert len({fields[b"__data__"] for _, fields in entries}) == 1  # the same command twice
    assert [r.request_id for r in await history(redis, settings)] == [outcome.request_id]


async def test_commands_of_a_dead_worker_are_applied_once_by_another(
    redis_server: RedisServer, redis_masters: list[RedisServer], redis: Redis
) -> None:
    """A worker that read commands and died: another claims and applies each exactly once."""
    settings = make_settings(
        redis_server, redis_masters, claim_idle_ms=400, request_timeout_ms=20_000
    )
    lock = settings.lock
    await redis.xgroup_create(lock.command_stream, lock.command_group, id="$", mkstream=True)
    pairs = [(uuid.uuid4(), uuid.uuid4()) for _ in range(20)]
    async with LockClient(settings) as locks:
        sends = [
            asyncio.create_task(locks.send("acquire", u, p, f"o{i}"))
            for i, (u, p) in enumerate(pairs)
        ]
        await wait_for(lambda: redis.xlen(lock.command_stream), lambda n: n == 20)
        # The doomed worker: reads every command into its pending list, never acks.
        read = await redis.xreadgroup(
            lock.command_group, "doomed", {lock.command_stream: ">"}, count=100
        )
        assert len(read[0][1]) == 20
        async with keepers(settings, 2):
            outcomes = await asyncio.gather(*sends)
            # Redeliver every command once more (same request ids): nothing changes.
            for _, fields in read[0][1]:
                await redis.xadd(lock.command_stream, fields)
            await wait_for(
                lambda: redis.xpending(lock.command_stream, lock.command_group),
                lambda info: info["pending"] == 0,
            )
    assert [o.result for o in outcomes] == ["granted"] * 20
    records = await history(redis, settings)
    assert sorted(r.request_id for r in records) == sorted(o.request_id for o in outcomes)
    assert all(r.fencing_token == 1 for r in records)  # one INCR per pair: applied once


async def test_two_masters_down_is_quorum_unavailable_not_denied(
    redis_server: RedisServer, redis_masters: list[RedisServer], redis: Redis
) -> None:
    """Through the keeper: a clear "lock quorum unavailable" 503, logged, nothing granted."""
    settings = make_settings(redis_server, redis_masters)
    user, profile = uuid.uuid4(), uuid.uuid4()
    async with keepers(settings), LockClient(settings) as locks:
        with stopped(redis_masters[1:]):
            with pytest.raises(DependencyUnavailable) as caught:
                await locks.acquire(user, profile, "a")
            assert caught.value.dependency == "redlock"
            assert "lock quorum unavailable" in caught.value.message
        granted = await locks.acquire(user, profile, "a")  # masters back: it works again
    results = [r.result for r in await history(redis, settings)]
    assert results == ["quorum_unavailable", "granted"]
    assert granted.fencing_token == 1
