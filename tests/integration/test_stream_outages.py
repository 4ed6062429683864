"""The stream service when a process goes away: a dependency down or stalled is a 503 naming
it, Redis restarted empty is recovered from, and a stream instance stopped with SIGTERM hands
its clients over to the other one."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable

import pytest
from streamclient import Pair, aget, data, next_event, open_stream

from kubescaler.entrypoints import replay
from kubescaler_dev.nginx import Nginx
from kubescaler_dev.redis import RedisServer
from kubescaler_dev.services import Service

pytestmark = pytest.mark.integration


async def test_lock_keeper_down_is_503_within_the_timeout(
    gateway: Nginx, lock_keeper_service: Service, pair: Pair
) -> None:
    """No lock-keeper: the stream answers 503 naming it after the request timeout (2 s)."""
    lock_keeper_service.stop()
    try:
        started = time.monotonic()
        r = await aget(gateway.url + pair.path("session-nolock-1"), timeout=30)
        took = time.monotonic() - started
        assert r.status_code == 503, r.text
        assert r.json()["dependency"] == "lock-keeper"
        assert took < 4
    finally:
        lock_keeper_service.start_ready()


async def test_paused_redis_is_503_naming_redis_not_the_lock_keeper(
    stream_services: list[Service], redis_server: RedisServer, pairs: list[Pair]
) -> None:
    """Redis stalled (SIGSTOP): the lock command cannot be published, so the 503 names redis;
    once it runs again, the next stream is granted at once: the lock-keeper rode out the stall
    (its broker retries a timed-out read) instead of pausing 5 s after a failed one."""
    pair, later = pairs.pop(), pairs.pop()
    redis_server.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        r = await aget(stream_services[0].url + pair.path("session-paused-1"), timeout=30)
        took = time.monotonic() - started
    finally:
        redis_server.signal(signal.SIGCONT)
    assert r.status_code == 503, r.text
    assert r.json()["dependency"] == "redis", r.json()
    assert took < 4
    async with open_stream(stream_services[0].url + later.path("session-paused-2")) as (r, _):
        assert r.status_code == 200, (await r.aread()).decode()


async def test_base_down_is_503(gateway: Nginx, base_service: Service, pair: Pair) -> None:
    base_service.stop()
    try:
        r = await aget(gateway.url + pair.path("session-nobase-1"), timeout=30)
        assert r.status_code == 503, r.text
        assert r.json()["dependency"] == "base"
    finally:
        base_service.start_ready()


async def test_sigterm_drains_clients_to_the_other_instance(
    gateway: Nginx,
    stream_services: list[Service],
    pairs: list[Pair],
    redis_server: RedisServer,
    redis_login: Callable[[str], None],
) -> None:
    """SIGTERM: clients get `reconnect` with a retry, come back on the other instance at once
    (their locks handed over), the drained process exits, and the lock history verifies."""
    mine = [pairs.pop() for _ in range(4)]
    async with contextlib.AsyncExitStack() as stack:
        opened = []
        for i, p in enumerate(mine):
            _, q = await stack.enter_async_context(
                open_stream(gateway.url + p.path(f"session-drain-{i}"))
            )
            opened.append((p, q, data(await next_event(q, "hello"))["instance"]))
        victim_name = opened[0][2]
        victim = next(s for s in stream_services if s.name == victim_name)
        on_victim = [(p, q) for p, q, inst in opened if inst == victim_name]
        assert victim.popen is not None
        victim.signal(signal.SIGTERM)
        for _, q in on_victim:
            msg = await next_event(q, "reconnect", timeout=5)
            assert msg.retry is not None
        assert victim.popen.wait(15) is not None
        for p, _ in on_victim:
            session = f"session-drain-{mine.index(p)}"
            async with open_stream(gateway.url + p.path(session)) as (r, q):
                assert r.status_code == 200, "the same session must get its lock back at once"
                hello = data(await next_event(q, "hello"))
                assert hello["instance"] != victim_name
    victim.start_ready()
    redis_login("replay")
    assert replay.run(["--redis-url", redis_server.url, "--verify"]) == 0


async def test_streams_come_back_after_redis_restarts_empty(
    gateway: Nginx, redis_server: RedisServer, pair: Pair
) -> None:
    """Redis restarted without its data (the command stream and its consumer group gone):
    the lock-keeper recreates the group and streams are granted again within seconds."""
    redis_server.stop()
    redis_server.start_ready()
    deadline = time.monotonic() + 20
    while True:
        async with open_stream(gateway.url + pair.path("session-restart-1")) as (r, q):
            if r.status_code == 200:
                await next_event(q, "hello")
                return
        assert time.monotonic() < deadline, f"still {r.status_code} 20 s after the restart"
        await asyncio.sleep(0.5)
