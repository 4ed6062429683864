"""The stream service through a failover of the state Redis: real lock-keeper and stream
processes that find the primary through the Sentinels. After the primary is SIGKILLed and a
replica promoted, without a restart: new streams are granted (the lock client's reply channel
is back), a grant made on one instance ends the older stream of the pair on the other (its log
follower is back), an open stream keeps streaming, and the log verifies."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamclient import Pair, data, next_event, open_stream

from kubescaler.entrypoints import replay
from kubescaler_dev.logins import service_env
from kubescaler_dev.proc import free_port
from kubescaler_dev.sentinel import StateRedis
from kubescaler_dev.services import Service, start_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def topology(test_state: Path, redis_passwords: dict[str, str]) -> Iterator[StateRedis]:
    data_dir = test_state / f"state-redis-{uuid.uuid4().hex[:6]}"
    state = StateRedis(
        data_dir,
        redis_passwords,
        free_port(),
        [free_port(), free_port()],
        [free_port() for _ in range(3)],
        False,
    )
    state.start_ready()
    yield state
    state.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def processes(
    topology: StateRedis,
    stream_env: dict[str, str],
    test_state: Path,
    redis_passwords: dict[str, str],
) -> Iterator[tuple[Service, Service]]:
    """A lock-keeper and two stream instances on the topology (locks held 60 s, so a stream
    outlives the failover); "slow" refreshes every 30 s, so only its log follower can end its
    streams within the test."""
    env = {
        **stream_env,
        **topology.env(),
        "KUBESCALER_LOCK_TTL_MS": "60000",
    }
    logs = test_state / "logs"
    pw = redis_passwords
    started = []
    try:
        started.append(
            start_service("lock-keeper", env, logs, name="keeper-failover", passwords=pw)
        )
        slow = {
            **env,
            "KUBESCALER_INSTANCE": "stream-slow",
            "KUBESCALER_LOCK_REFRESH_INTERVAL_MS": "30000",
        }
        started.append(
            start_service("stream", slow, logs, name="stream-failover-slow", passwords=pw)
        )
        quick = {**env, "KUBESCALER_INSTANCE": "stream-quick"}
        started.append(
            start_service("stream", quick, logs, name="stream-failover-quick", passwords=pw)
        )
        yield started[1], started[2]
    finally:
        for svc in reversed(started):
            svc.stop()


async def test_streams_follow_the_failover_without_a_restart(
    topology: StateRedis,
    processes: tuple[Service, Service],
    pairs: list[Pair],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow, quick = processes
    older, kept, fresh = pairs.pop(), pairs.pop(), pairs.pop()
    async with (
        open_stream(slow.url + older.path("session-fo-older")) as (r1, q1),
        open_stream(quick.url + kept.path("session-fo-kept")) as (r2, q2),
    ):
        assert (r1.status_code, r2.status_code) == (200, 200)
        first = data(await next_event(q1, "hello"))
        await next_event(q2, "hello")
        old = topology.current()
        killed = time.monotonic()
        old.kill()
        new = await asyncio.to_thread(topology.promoted, old)
        promoted = time.monotonic() - killed
        # the reply channel: a new stream is granted again on its own
        deadline = killed + 20
        while True:
            async with open_stream(quick.url + fresh.path("session-fo-fresh")) as (r, q):
                if r.status_code == 200:
                    await next_event(q, "hello")
                    break
            assert time.monotonic() < deadline, f"still {r.status_code} 20 s after the kill"
            await asyncio.sleep(0.2)
        granted = time.monotonic() - killed
        # the log follower: the older stream's session granted again on the other instance
        async with open_stream(quick.url + older.path("session-fo-older")) as (r, q):
            assert r.status_code == 200
            newer = data(await next_event(q, "hello"))
            assert newer["token"] > first["token"]
            ended = data(await next_event(q1, "superseded", timeout=10))
            assert ended["token"] == newer["token"]
        superseded = time.monotonic() - killed
        # the stream opened before the kill still streams, its lock refreshed through it
        while not q2.empty():
            assert q2.get_nowait().event not in ("lock-lost", "superseded")
        await next_event(q2, "data")
    print(
        f"\nstream service through a failover: {new.name} promoted after {promoted:.2f} s; a new "
        f"stream granted {granted:.2f} s after the kill; the older stream superseded through "
        f"the other instance's log follower {superseded:.2f} s after it"
    )
    # replay finds the new primary through the Sentinels as the services do
    for name, value in {**topology.env(), **service_env("replay", topology.passwords)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KUBESCALER_REDIS_LOCK_URLS", "redis://127.0.0.1:1/0")  # unused here
    monkeypatch.setenv("KUBESCALER_REDIS_URL", "redis://127.0.0.1:1/0")  # nor this
    assert replay.run(["--verify"]) == 0
