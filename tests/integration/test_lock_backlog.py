"""What the keepers report for the alerts (issue 26), on real servers: the command backlog's
oldest entry's age from XPENDING, and each Redlock master as up and voting or not."""

from __future__ import annotations

import time
import uuid

import prometheus_client as prom
import pytest
from redis.asyncio import Redis

from kubescaler.adapters.lockgroup import CommandGroup
from kubescaler.adapters.redlock import READY_KEY, master_client
from kubescaler.adapters.redlock_recovery import SINCE_KEY, MasterRecovery
from kubescaler.services import lock_metrics
from kubescaler.settings import LockSettings
from kubescaler_dev.redis import RedisServer, stopped

pytestmark = pytest.mark.integration


class _NoBroker:
    subscribers: list[object] = []


async def test_the_backlog_says_how_long_its_oldest_command_has_waited(
    redis_server: RedisServer,
) -> None:
    """A command read 12 s ago (its id's time) and never acknowledged: 1 pending, ~12 s old;
    acknowledged, nothing pending and age 0."""
    lock = LockSettings(command_stream=f"t:cmd:{uuid.uuid4()}", command_group="g")
    redis = Redis.from_url(redis_server.url, **redis_server.login())
    try:
        group = CommandGroup(redis, lock, _NoBroker())  # type: ignore[arg-type]
        assert await group.ensure()
        sent_ms = int(time.time() * 1000) - 12_000
        await redis.xadd(lock.command_stream, {"c": "1"}, id=f"{sent_ms}-0")
        await redis.xreadgroup("g", "keeper-a", {lock.command_stream: ">"}, count=1)
        count, oldest_s = await group.backlog()
        assert count == 1
        assert 11.5 < oldest_s < 20
        await redis.xack(lock.command_stream, "g", f"{sent_ms}-0")
        assert await group.backlog() == (0, 0.0)
    finally:
        await redis.delete(lock.command_stream)
        await redis.aclose()


def _gauge(name: str, master: int) -> float | None:
    return prom.REGISTRY.get_sample_value(name, {"master": str(master)})


async def test_each_master_is_reported_up_and_voting_or_not(
    redis_masters: list[RedisServer],
) -> None:
    """Every recovery step sets kubescaler_lock_master_up and _voting per master: all three
    voting; one stopped reads 0 and 0; one without its ready marker (back empty) up, not
    voting."""
    clients = [master_client(m.url, 0.25, **m.login()) for m in redis_masters]
    recovery = MasterRecovery(clients, 60_000, 0.25, report=lock_metrics.masters_seen)
    try:
        await recovery.step()  # brings them in, if nothing did before in this session
        await recovery.step()
        assert [_gauge("kubescaler_lock_master_voting", i) for i in range(3)] == [1, 1, 1]
        with stopped(redis_masters[2:]):
            await recovery.step()
            assert _gauge("kubescaler_lock_master_up", 2) == 0
            assert _gauge("kubescaler_lock_master_voting", 2) == 0
            assert _gauge("kubescaler_lock_master_voting", 0) == 1
        await clients[1].delete(READY_KEY)
        await MasterRecovery(clients, 60_000, 0.25, report=lock_metrics.masters_seen).step()
        assert (
            _gauge("kubescaler_lock_master_up", 1),
            _gauge("kubescaler_lock_master_voting", 1),
        ) == (1, 0)
    finally:  # every master voting again, as the other tests expect them
        for client in clients:
            await client.set(READY_KEY, "1")
            await client.delete(SINCE_KEY)
            await client.aclose()
