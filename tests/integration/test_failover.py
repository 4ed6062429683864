"""The state Redis fails over: its primary SIGKILLed under a steady stream of lock commands
through the real lock-keeper and LockClient, Sentinel promotes a replica, and grants resume on
their own (no process restarted); what the new primary lost is measured, and its log verifies."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from failover import kept, log_records, run_load, stop
from redis.asyncio import Redis

from kubescaler.adapters import redis_client
from kubescaler.adapters.locklog import LogTail
from kubescaler.domain.locks import verify
from kubescaler.entrypoints.lock_keeper import Worker
from kubescaler.settings import LockSettings, RedisSettings, Settings
from kubescaler_dev.proc import free_port
from kubescaler_dev.redis import RedisServer
from kubescaler_dev.sentinel import StateRedis

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Sentinel's own time to promote (down-after 1 s) plus the clients' way back to the new primary
RESUME_BOUND_S = 10.0


@pytest.fixture
def state_redis(test_state: Path, redis_passwords: dict[str, str]) -> Iterator[StateRedis]:
    """A primary, two replicas and three Sentinels of its own (the test kills the primary)."""
    data = test_state / f"state-redis-{uuid.uuid4().hex[:6]}"
    topology = StateRedis(
        data,
        redis_passwords,
        free_port(),
        [free_port(), free_port()],
        [free_port() for _ in range(3)],
        False,
    )
    topology.start_ready()
    yield topology
    topology.stop()
    shutil.rmtree(data, ignore_errors=True)


def sentinel_settings(topology: StateRedis, masters: list[RedisServer]) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(
        instance=f"t-{tag}",
        redis=RedisSettings(
            sentinels=[f"127.0.0.1:{s.port}" for s in topology.sentinels],
            sentinel_master=topology.master,
            lock_urls=[m.url for m in masters],
            **topology.login(),
        ),
        lock=LockSettings(
            command_stream=f"t:{tag}:cmd",
            log_stream=f"t:{tag}:log",
            ttl_ms=15_000,
            request_timeout_ms=2000,
            claim_idle_ms=2000,
        ),
    )


@pytest.fixture
def settings(state_redis: StateRedis, redis_masters: list[RedisServer]) -> Settings:
    return sentinel_settings(state_redis, redis_masters)


@pytest.fixture
async def keeper(settings: Settings) -> AsyncIterator[Worker]:
    """One lock-keeper in this process, with its consumer-group upkeep."""
    worker = Worker(settings, name=f"{settings.instance}-keeper")
    await worker.start()
    upkeep = asyncio.create_task(worker.group.upkeep(lambda _: None))
    yield worker
    upkeep.cancel()
    await worker.stop()


async def eventually(check: Callable[[], object], timeout: float) -> None:
    """Until ``check()`` is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    for _ in itertools.count():
        if check() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.1)


async def test_grants_resume_after_the_primary_is_killed_and_the_log_verifies(
    state_redis: StateRedis, settings: Settings, keeper: Worker
) -> None:
    """SIGKILL the primary under load: a replica is promoted, grants resume within the bound,
    a log follower started before the kill reads records logged after it, no contender is
    ever granted a held pair, no holder loses its lock, and the log on the new primary
    verifies. Prints the times and what was lost."""
    follower = redis_client.connect(settings.redis)
    followed: list[float] = []

    async def follow() -> None:
        async for _ in LogTail(follower, settings.lock.log_stream, block_ms=500).follow():
            followed.append(time.monotonic())

    following = asyncio.create_task(follow())
    load, tasks = await run_load(settings)
    try:
        await asyncio.sleep(3)
        old = state_redis.current()
        killed = time.monotonic()
        old.kill()
        new = await asyncio.to_thread(state_redis.promoted, old)
        promoted = time.monotonic() - killed
        await eventually(lambda: [s for s in load.grants() if s.at > killed], RESUME_BOUND_S * 2)
        await asyncio.sleep(3)  # steady again
    finally:
        await stop(load, tasks)
        following.cancel()
    resumed = load.resumed_after(killed)
    records = await log_records(follower, settings.lock.log_stream)
    what = await kept(follower, settings, load, records)
    await follower.aclose()
    print(
        f"\nfailover: {old.name} killed; {new.name} promoted after {promoted:.2f} s; grants "
        f"resumed {resumed:.2f} s after the kill; 503s by dependency {dict(load.failures())}; "
        f"{what.line()}; {len(load.grants())} grants in all"
    )
    assert resumed < RESUME_BOUND_S, load.timeline(killed)
    assert load.wrong == []
    assert [t for t in followed if t > killed + resumed], "the log follower did not come back"
    assert verify(records) == []
    assert what.twice == []


#: How long the replicas are cut off before the primary dies (below Sentinel's down-after, so
#: they stay eligible for promotion)
CUT_OFF_S = 0.5


@pytest.mark.parametrize("guarded", [True, False], ids=["min-replicas", "unguarded"])
async def test_what_a_primary_cut_off_from_its_replicas_can_lose_and_the_rest_verifies(
    state_redis: StateRedis, settings: Settings, keeper: Worker, guarded: bool
) -> None:
    """Replication is asynchronous: replicas cut off for CUT_OFF_S (stopped, their links
    closed by the primary) when the primary is killed stand for a partition or a lost node.
    As configured (min-replicas-to-write 1) the primary refuses writes meanwhile (503s naming
    redis) and the promoted replica lacks nothing a client saw answered. Unguarded (the
    setting switched off on the primary) it takes them, and the promoted replica lacks them:
    answered commands with no log record and no applied-command record, fencing tokens
    granted again. Either way what it kept verifies, no contender is granted a held pair, and
    grants resume. Prints what was lost."""
    load, tasks = await run_load(settings)
    try:
        await asyncio.sleep(3)
        old = state_redis.current()
        primary = Redis(port=old.port, **old.login())
        if not guarded:
            await primary.config_set("min-replicas-to-write", 0)
        behind = [r for r in state_redis.servers if r is not old]
        for replica in behind:
            replica.signal(signal.SIGSTOP)
        await primary.client_kill_filter(_type="replica")
        await primary.aclose()
        cut = time.monotonic()
        await asyncio.sleep(CUT_OFF_S)
        killed = time.monotonic()
        old.kill()
        for replica in behind:
            replica.signal(signal.SIGCONT)
        new = await asyncio.to_thread(state_redis.promoted, old)
        promoted = time.monotonic() - killed
        await eventually(lambda: [s for s in load.grants() if s.at > killed], RESUME_BOUND_S * 2)
        await asyncio.sleep(3)
    finally:
        for replica in state_redis.servers:
            replica.signal(signal.SIGCONT)
        await stop(load, tasks)
    resumed = load.resumed_after(killed)
    client = redis_client.connect(settings.redis)
    records = await log_records(client, settings.lock.log_stream)
    what = await kept(client, settings, load, records)
    await client.aclose()
    refused = sum(s.failure == "redis" for s in load.sent.values() if cut <= s.at < killed)
    print(
        f"\nreplicas cut off {CUT_OFF_S} s before the kill ({'guarded' if guarded else 'unguarded'}"
        f"): {refused} commands refused meanwhile; {new.name} promoted after {promoted:.2f} s; "
        f"grants resumed {resumed:.2f} s after the kill; {what.line()}"
    )
    assert resumed < RESUME_BOUND_S, load.timeline(killed)
    assert load.wrong == []
    assert verify(records) == []
    if guarded:
        assert refused, "a primary with no replica must refuse writes"
        assert (what.lost_log, what.lost_applied, what.reused_tokens) == ([], [], 0)
    else:
        assert what.lost_log, "the replicas were behind: something must be missing"
