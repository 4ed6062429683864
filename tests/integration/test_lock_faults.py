"""The lock core's stores lost, wiped or rolled back under contention, on real servers: several
sessions fight for each of a few pairs through the real entry point, stream processes and
lock-keeper, while one store at a time fails. Judged from what the clients saw - the fencing
tokens of their ``hello`` events and the server times of their data - and from the event log:
its JSON-lines export taken before the fault, plus what was logged after, verifies clean."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from kubescaler.domain.locks import LockRecord, verify
from kubescaler.entrypoints.replay import from_redis
from kubescaler.settings_redis import RedisSettings
from kubescaler_dev.contention.judge import judge, recovery
from kubescaler_dev.contention.workload import Workload
from kubescaler_dev.nginx import Nginx
from kubescaler_dev.proc import free_port
from kubescaler_dev.redis import RedisServer
from kubescaler_dev.services import Service, start_service

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

#: the test stack's lock TTL (STREAM_TEST_ENV's): a probe's pair is free again after it
TTL_S = 3.0
WARM_S, SETTLE_S = 4.0, 6.0


@dataclass
class FaultStack:
    state: RedisServer
    masters: list[RedisServer]
    keeper: Service
    gateway: Nginx
    pairs: list[tuple[str, str]]
    log_stream: str = "kubescaler:lock:log"

    def take(self, n: int) -> list[tuple[str, str]]:
        taken, self.pairs = self.pairs[:n], self.pairs[n:]
        assert len(taken) == n
        return taken


@pytest.fixture(scope="module")
def stack(
    test_state: Path,
    stream_env_for: Callable[[RedisServer, list[RedisServer]], dict[str, str]],
    redis_passwords: dict[str, str],
) -> Iterator[FaultStack]:
    """A stack of its own: a persistent state Redis (its data directory can be copied and put
    back), three Redlock masters that persist every write, a keeper, two streams, main and
    the nginx entry point, with base and Cassandra shared."""
    home = test_state / "lock-faults"
    shutil.rmtree(home, ignore_errors=True)
    state = RedisServer(free_port(), home / "state", redis_passwords, persist=True)
    masters = [
        RedisServer(free_port(), home / f"m{i}", redis_passwords, fsync_always=True, kind="master")
        for i in range(3)
    ]
    for server in (state, *masters):
        server.start_ready()
    env = stream_env_for(state, masters)
    logs = home / "logs"
    pw = redis_passwords
    keeper = start_service("lock-keeper", env, logs, name="faults-keeper", passwords=pw)
    streams = [
        start_service("stream", {**env, "KUBESCALER_INSTANCE": n}, logs, name=n, passwords=pw)
        for n in ("faults-a", "faults-b")
    ]
    main = start_service("main", env, logs, name="faults-main", passwords=pw)
    nginx = Nginx(
        home / "nginx",
        free_port(),
        f"127.0.0.1:{main.port}",
        [f"127.0.0.1:{s.port}" for s in streams],
    )
    nginx.start()
    nginx.wait_until(nginx.ready, 20)
    with httpx.Client(base_url=nginx.url, timeout=120) as http:
        made = http.post(
            "/main/testdata", params={"users": 400, "profiles": 300, "users_per_profile": 1}
        )
        assert made.status_code == 201, made.text
        profiles = http.get("/main/profiles", params={"limit": 5000}).json()
    pairs = [(u, p["id"]) for p in profiles for u in p["users"]]
    yield FaultStack(state, masters, keeper, nginx, pairs)
    for proc in (nginx, main, *streams, keeper, *masters, state):
        proc.stop()


def export(state: RedisServer) -> list[LockRecord]:
    """The event log as it is now (what `kubescaler replay --jsonl` writes, as replay)."""
    login = RedisSettings(**state.login("replay"))
    return list(from_redis(state.url, "kubescaler:lock:log", None, None, login))


def log_order(log_id: str) -> tuple[int, int]:
    ms, _, seq = log_id.partition("-")
    return int(ms), int(seq or 0)


async def contend(stack: FaultStack, name: str, fault: Callable[[], Awaitable[None]]) -> float:
    """Contenders and probes through the entry point; the log exported; ``fault``; until every
    probe answers again; judged. Returns the seconds grants took to resume."""
    work = Workload(
        stack.gateway.url,
        contended=stack.take(3),
        fresh=stack.take(20),
        sessions_per_pair=3,
        lapse_s=TTL_S + 1,
    )
    work.start()
    try:
        await asyncio.sleep(WARM_S)
        before = await asyncio.to_thread(export, stack.state)
        since = time.monotonic()
        await fault()
        deadline = since + 60
        while time.monotonic() < deadline:
            latest = {a.probe: a.ok for a in work.record.answers if a.at >= since}
            if len(latest) == 3 and all(latest.values()):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(SETTLE_S)
    finally:
        record = await work.stop()
    back = recovery(record.answers, since)
    verdict = judge(record.streams)
    after = await asyncio.to_thread(export, stack.state)
    # what the store still holds of the time before the export is the export's, or lost
    last = log_order(before[-1].log_id)
    history = before + [r for r in after if log_order(r.log_id) > last]
    problems = verify(history)
    print(
        f"\n{name}: grants and answers back after {back.seconds:.1f}s; failed {back.failed}; "
        f"{len(record.streams)} streams, {len(verdict.overlaps)} overlaps, "
        f"{len(verdict.reuses) + len(verdict.backwards)} token faults; "
        f"log: {len(before)} records before, {len(after)} after"
    )
    assert verdict.clean, verdict.describe()
    assert back.unclear == 0, back.failed
    assert problems == [], problems[:5]
    assert back.seconds < 30
    return back.seconds


def _restart(server: RedisServer, data: Callable[[], None] = lambda: None) -> None:
    """SIGKILL (as a lost host or a crash), ``data`` done to its folder, started again."""
    server.kill()
    data()
    server.start_ready()


async def test_the_state_redis_rolled_back_to_an_older_copy(stack: FaultStack) -> None:
    """The state Redis's data directory copied while it runs, a few seconds of contention
    later put back (a restored backup, a lost host's older disk): the applied-command records,
    the log's last records and the consumer group go back in time; tokens do not."""
    copy = stack.state.data_dir.parent / "state-copy"

    async def fault() -> None:
        await Redis.from_url(stack.state.url, **stack.state.login()).bgrewriteaof()
        await asyncio.sleep(1)
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(stack.state.data_dir, copy)
        await asyncio.sleep(3)  # grants the copy does not know

        def put_back() -> None:
            shutil.rmtree(stack.state.data_dir)
            shutil.copytree(copy, stack.state.data_dir)

        await asyncio.to_thread(_restart, stack.state, put_back)

    await contend(stack, "state Redis rolled back", fault)


async def test_the_state_redis_wiped(stack: FaultStack) -> None:
    """The state Redis comes back with no data at all: the command stream, its group, the
    log and the launched state are gone; the keeper puts the group back, tokens go on."""

    async def fault() -> None:
        await asyncio.to_thread(
            _restart, stack.state, lambda: shutil.rmtree(stack.state.data_dir, ignore_errors=True)
        )

    await contend(stack, "state Redis wiped", fault)


async def test_one_redlock_master_wiped(stack: FaultStack) -> None:
    """One master's data deleted (FLUSHALL reaches its AOF) and the process restarted: it
    abstains until caught up; grants go on through the other two with higher tokens."""
    master = stack.masters[1]

    async def fault() -> None:
        client = Redis.from_url(master.url, **master.login())
        await client.flushall()
        await client.aclose()
        await asyncio.to_thread(_restart, master)

    await contend(stack, "one Redlock master wiped", fault)
    ready = await Redis.from_url(master.url, **master.login()).get("kubescaler:lock:ready")
    assert ready == b"1", "the wiped master was not caught up after a lock's lifetime"
