"""Keepers cover each other: a real keeper process killed (SIGKILL) or paused (SIGSTOP)
mid-batch under a steady stream of acquires, an in-process keeper beside it; nothing is 503,
nothing is applied twice, and a killed keeper's commands are answered within a second."""

from __future__ import annotations

import asyncio
import collections
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import prometheus_client
import pytest
from redis.asyncio import Redis

from kubescaler.adapters import lockstate
from kubescaler.adapters.keepers import registry_key
from kubescaler.adapters.lockclient import LockClient
from kubescaler.adapters.lockwire import deliveries
from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.domain.locks import record_from_fields, verify
from kubescaler.entrypoints.lock_keeper import Worker
from kubescaler.settings import LockSettings, RedisSettings, Settings
from kubescaler_dev.proc import Proc, free_port
from kubescaler_dev.redis import RedisServer

pytestmark = pytest.mark.integration

SLOW_KEEPER = Path(__file__).with_name("slow_keeper.py")
VOTE_DELAY_S = 0.3  # the victim holds each claimed batch this long


def make_settings(redis: RedisServer, masters: list[RedisServer]) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(
        instance=f"to-{tag}",
        redis=RedisSettings(url=redis.url, lock_urls=[m.url for m in masters], **redis.login()),
        lock=LockSettings(
            command_stream=f"kubescaler:lock:to:{tag}:cmd",
            log_stream=f"kubescaler:lock:to:{tag}:log",
        ),
    )


@asynccontextmanager
async def slow_keeper(settings: Settings, name: str, logs: Path) -> AsyncIterator[Proc]:
    """The victim: a keeper process (slow votes), ready and registered."""
    port = free_port()
    lock = settings.lock
    env = {
        "KUBESCALER_INSTANCE": name,
        "KUBESCALER_REDIS_URL": settings.redis.url,
        "KUBESCALER_REDIS_LOCK_URLS": ",".join(settings.redis.lock_urls),
        "KUBESCALER_LOCK_COMMAND_STREAM": lock.command_stream,
        "KUBESCALER_LOCK_LOG_STREAM": lock.log_stream,
        "KUBESCALER_LOCK_KEEPER_PORT": str(port),
        "KUBESCALER_LOG_LEVEL": "warning",
        "SLOW_KEEPER_VOTE_S": str(VOTE_DELAY_S),
        "KUBESCALER_REDIS_USERNAME": settings.redis.username,
        "KUBESCALER_REDIS_PASSWORD": settings.redis.password,
    }
    proc = Proc(name, [sys.executable, str(SLOW_KEEPER)], logs / f"{name}.log", env=env)
    proc.start()
    try:
        ready = f"http://127.0.0.1:{port}/readyz"
        await asyncio.to_thread(proc.wait_until, lambda: httpx.get(ready).is_success, 30)
        yield proc
    finally:
        proc.kill()


@dataclass
class Load:
    """Acquires of fresh pairs, ``workers`` in flight, each followed by a short pause."""

    locks: LockClient
    sent: dict[str, float] = field(default_factory=dict)
    answered: dict[str, float] = field(default_factory=dict)
    results: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    running: bool = True
    span_s: float = 0.0

    async def worker(self) -> None:
        while self.running:
            rid = uuid.uuid4().hex
            self.sent[rid] = time.monotonic()
            try:
                out = await self.locks.send(
                    "acquire", uuid.uuid4(), uuid.uuid4(), f"s-{rid}", request_id=rid
                )
                self.results[out.result] += 1
            except DependencyUnavailable as exc:
                self.failures.append(f"{exc.dependency}: {exc.message}")
            self.answered[rid] = time.monotonic()
            await asyncio.sleep(0.05)

    @asynccontextmanager
    async def running_with(self, workers: int) -> AsyncIterator[None]:
        started = time.monotonic()
        tasks = [asyncio.create_task(self.worker()) for _ in range(workers)]
        try:
            yield
        finally:
            self.running = False
            await asyncio.gather(*tasks)
            self.span_s = time.monotonic() - started

    def __str__(self) -> str:
        rate = len(self.sent) / self.span_s if self.span_s else 0.0
        return (
            f"{len(self.sent)} requests ({rate:.0f}/s), {dict(self.results)}, "
            f"{len(self.failures)} failed"
        )


async def wait_for(
    check: Callable[[], Awaitable[bool]], timeout: float, every: float = 0.005
) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(every)


async def held_in_flight(redis: Redis, lock: LockSettings, name: str) -> dict[str, bytes | None]:
    """What keeper ``name`` holds pending: request id -> its claim (b"": in flight)."""
    pending = await redis.xpending_range(
        lock.command_stream, lock.command_group, "-", "+", 1000, consumername=name
    )
    held: dict[str, bytes | None] = {}
    for entry in pending:
        entry_id = entry["message_id"]
        for _, fields in await redis.xrange(lock.command_stream, entry_id, entry_id):
            for d in deliveries({"data": [fields], "message_ids": [entry_id]}):
                if d.cmd is not None:
                    rid = d.cmd.request_id
                    held[rid] = await redis.get(lockstate.applied_key(rid))
    return held


def sample(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def two_keepers(
    settings: Settings, redis: Redis, test_state: Path
) -> AsyncIterator[tuple[Proc, str, LockClient]]:
    """The victim process and an in-process survivor, both registered, and a lock client."""
    victim = f"{settings.instance}-victim"
    survivor = Worker(settings, name=f"{settings.instance}-survivor")
    async with slow_keeper(settings, victim, test_state / "logs") as proc:
        await survivor.start()
        try:

            async def registered() -> bool:
                return len(await redis.hgetall(registry_key(settings.lock))) == 2

            await wait_for(registered, 10, every=0.05)
            async with LockClient(settings) as locks:
                await asyncio.sleep(settings.lock.heartbeat_ttl_ms / 1000)  # survivor healthy
                yield proc, victim, locks
        finally:
            await survivor.stop()


async def the_log(redis: Redis, settings: Settings) -> list[str]:
    entries = await redis.xrange(settings.lock.log_stream)
    records = [record_from_fields(f, i.decode()) for i, f in entries]
    assert verify(records) == []
    return [r.request_id for r in records]


async def catch_mid_batch(redis: Redis, lock: LockSettings, victim: str, least: int) -> None:
    """Wait until the victim holds a batch of at least ``least`` commands it has claimed."""

    async def in_flight() -> bool:
        held = await held_in_flight(redis, lock, victim)
        return len(held) >= least and all(v == b"" for v in held.values())

    await wait_for(in_flight, 30)


async def test_a_killed_keepers_commands_are_answered_within_a_second(
    redis_server: RedisServer, redis_masters: list[RedisServer], test_state: Path
) -> None:
    """SIGKILL a keeper holding a claimed batch: the survivor finds it dead (heartbeat lapsed,
    connection closed), releases its claims and applies its commands, each answered within
    1 s of the kill; no request is a 503 and each is applied exactly once."""
    settings = make_settings(redis_server, redis_masters)
    lock = settings.lock
    redis = Redis.from_url(redis_server.url, **redis_server.login())
    taken_before = sample("kubescaler_lock_commands_taken_over_total", verdict="dead")
    released_before = sample("kubescaler_lock_claims_released_total")
    try:
        async with two_keepers(settings, redis, test_state) as (proc, victim, locks):
            load = Load(locks)
            async with load.running_with(workers=12):
                await asyncio.sleep(1.5)
                await catch_mid_batch(redis, lock, victim, least=2)
                proc.signal(signal.SIGKILL)
                killed = time.monotonic()
                await asyncio.sleep(0.05)  # anything Redis handed it before it saw the close
                held = await held_in_flight(redis, lock, victim)
                await wait_for(lambda: _answered(load, held), 3)
                took = max(load.answered[rid] for rid in held) - killed
                await asyncio.sleep(1.5)
        log = await the_log(redis, settings)
    finally:
        await redis.aclose()
    in_flight = sum(v == b"" for v in held.values())
    print(
        f"\ntakeover: the killed keeper held {len(held)} command(s) ({in_flight} claimed, in "
        f"flight); all answered {took * 1000:.0f} ms after SIGKILL; {load}"
    )
    assert in_flight > 0
    assert load.failures == []
    assert set(load.results) == {"granted"}
    assert took < 1.0, f"answered {took:.2f} s after the kill"
    assert sorted(log) == sorted(load.sent)  # every request applied, each exactly once
    taken = sample("kubescaler_lock_commands_taken_over_total", verdict="dead") - taken_before
    assert taken >= len(held)
    assert sample("kubescaler_lock_claims_released_total") - released_before >= in_flight


async def _answered(load: Load, held: dict[str, bytes | None]) -> bool:
    return all(rid in load.answered for rid in held)


async def test_a_paused_keeper_is_covered_and_nothing_is_applied_twice(
    redis_server: RedisServer, redis_masters: list[RedisServer], test_state: Path
) -> None:
    """SIGSTOP a keeper holding a claimed batch for 1.5 s (longer than its heartbeat's TTL):
    the survivor finds it silent (connection open), takes its entries but leaves its claims;
    resumed, it commits them. No request is a 503, none is applied twice, no claim released."""
    settings = make_settings(redis_server, redis_masters)
    lock = settings.lock
    redis = Redis.from_url(redis_server.url, **redis_server.login())
    silent_before = sample("kubescaler_lock_commands_taken_over_total", verdict="silent")
    released_before = sample("kubescaler_lock_claims_released_total")
    try:
        async with two_keepers(settings, redis, test_state) as (proc, victim, locks):
            load = Load(locks)
            async with load.running_with(workers=12):
                await asyncio.sleep(1.5)
                await catch_mid_batch(redis, lock, victim, least=1)
                held = await held_in_flight(redis, lock, victim)
                proc.signal(signal.SIGSTOP)
                try:
                    await asyncio.sleep(1.5)
                finally:
                    proc.signal(signal.SIGCONT)
                await wait_for(lambda: _answered(load, held), 3)
                await asyncio.sleep(1.0)
        log = await the_log(redis, settings)
    finally:
        await redis.aclose()
    silent = sample("kubescaler_lock_commands_taken_over_total", verdict="silent") - silent_before
    print(
        f"\npause: the paused keeper held {len(held)} claimed command(s); the survivor took "
        f"{silent:.0f} from it; {load}"
    )
    assert load.failures == []
    assert set(load.results) == {"granted"}
    assert sorted(log) == sorted(load.sent)  # every request applied, each exactly once
    assert silent >= len(held)
    assert sample("kubescaler_lock_claims_released_total") == released_before
