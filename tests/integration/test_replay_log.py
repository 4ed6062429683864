"""Replay over the real event log: plain XRANGE records, timelines and verification."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from kubescaler.adapters.lockclient import LockClient
from kubescaler.entrypoints import replay
from kubescaler.entrypoints.lock_keeper import Worker
from kubescaler.settings import LockSettings, RedisSettings, Settings
from kubescaler_dev.redis import RedisServer

pytestmark = pytest.mark.integration


async def test_replay_reads_and_verifies_the_live_log(
    redis_server: RedisServer,
    redis_masters: list[RedisServer],
    capsys: pytest.CaptureFixture[str],
    redis_login: Callable[[str], None],
) -> None:
    """What the keeper logged replays as a timeline and verifies clean."""
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        redis=RedisSettings(
            url=redis_server.url,
            lock_urls=[m.url for m in redis_masters],
            **redis_server.login(),
        ),
        lock=LockSettings(command_stream=f"r:{tag}:cmd", log_stream=f"r:{tag}:log"),
    )
    user, profile = uuid.uuid4(), uuid.uuid4()
    worker = Worker(settings, name=f"r-{tag}")
    await worker.start()
    try:
        async with LockClient(settings) as locks:
            await locks.acquire(user, profile, "a")
            await locks.refresh(user, profile, "a")
            await locks.release(user, profile, "a")
            await locks.acquire(user, profile, "b")
    finally:
        await worker.stop()
    redis_login("admin")  # the replay user reads kubescaler:lock:log only, not this test's log
    base = ["--redis-url", redis_server.url, "--stream", settings.lock.log_stream]
    assert replay.run([*base, "--verify"]) == 0
    assert "verified 4 records over 1 pair(s): no violations" in capsys.readouterr().out
    assert replay.run([*base, "--user", str(user)]) == 0
    timeline = capsys.readouterr().out
    assert timeline.splitlines()[0].startswith(f"pair {user}:{profile}")
    assert [ln.split()[1] for ln in timeline.splitlines()[1:]] == [
        "granted",
        "refreshed",
        "released",
        "granted",
    ]
    assert replay.run([*base, "--at", str(2**41)]) == 0  # far future: everything lapsed
    assert "0 pair(s) held" in capsys.readouterr().out


def test_replay_reports_an_unreachable_redis(capsys: pytest.CaptureFixture[str]) -> None:
    """A down Redis is a clear error and exit status 2, not an empty history."""
    assert replay.run(["--redis-url", "redis://127.0.0.1:1/0", "--verify"]) == 2
    assert "cannot read the log" in capsys.readouterr().err
