"""The consumer group's upkeep against a stand-in Redis and broker: what it repairs, reports."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from kubescaler.adapters.lockgroup import CommandGroup
from kubescaler.settings import LockSettings


@dataclass
class FakeRedis:
    """The group's two commands; ``groups`` is what exists, ``down`` makes both fail."""

    groups: set[tuple[str, str]] = field(default_factory=set)
    pending: int = 0
    down: bool = False

    async def xgroup_create(self, stream: str, group: str, id: str, mkstream: bool) -> None:
        if self.down:
            raise RedisConnectionError("down")
        if (stream, group) in self.groups:
            raise ResponseError("BUSYGROUP Consumer Group name already exists")
        assert (id, mkstream) == ("0", True)  # from the start: commands published meanwhile
        self.groups.add((stream, group))

    async def xpending(self, stream: str, group: str) -> dict[str, Any]:
        if self.down:
            raise RedisConnectionError("down")
        return {"pending": self.pending}


@dataclass
class Sub:
    running: bool = True


@dataclass
class FakeBroker:
    subscribers: list[Sub] = field(default_factory=lambda: [Sub(), Sub()])
    restarts: int = 0

    async def stop(self) -> None:
        for sub in self.subscribers:
            sub.running = False

    async def start(self) -> None:
        self.restarts += 1
        for sub in self.subscribers:
            sub.running = True


async def reports(group: CommandGroup, n: int) -> list[float]:
    """The first ``n`` backlog reports of the upkeep (no pause between rounds)."""
    got: list[float] = []
    done = asyncio.get_running_loop().create_future()

    def report(value: float) -> None:
        got.append(value)
        if len(got) == n and not done.done():
            done.set_result(None)

    task = asyncio.create_task(group.upkeep(report, every_s=0))
    try:
        await asyncio.wait_for(done, 5)
    finally:
        task.cancel()
    return got[:n]


LOCK = LockSettings(command_stream="t:cmd", command_group="g")


async def test_upkeep_puts_a_lost_group_back_restarts_a_stopped_broker_and_reports() -> None:
    """A group gone (Redis restarted empty) is created again and a subscriber FastStream stopped
    is restarted, once; every round reports the backlog."""
    redis, broker = FakeRedis(pending=3), FakeBroker()
    broker.subscribers[1].running = False
    group = CommandGroup(redis, LOCK, broker)  # type: ignore[arg-type]
    assert await reports(group, 3) == [3, 3, 3]
    assert redis.groups == {("t:cmd", "g")}
    assert broker.restarts == 1


async def test_upkeep_reports_an_unknown_backlog_while_redis_is_down_and_goes_on() -> None:
    """Redis down: the backlog is NaN (not a stale number), and the loop keeps running."""
    redis = FakeRedis(groups={("t:cmd", "g")}, pending=5, down=True)
    group = CommandGroup(redis, LOCK, FakeBroker())  # type: ignore[arg-type]
    got = await reports(group, 2)
    assert all(math.isnan(v) for v in got)
    redis.down = False
    assert (await reports(group, 1)) == [5]
