"""Lock round trips: the event path (client -> stream -> lock-keeper -> reply) vs direct Redlock.

Starts its own redis-servers (one for streams and state, three Redlock masters) on free ports
and lock-keeper worker processes (`kubescaler lock-keeper`), measures, prints a table, stops
everything. Not a test: numbers depend on the machine.

    uv run python bench/bench_locks.py [--n 1000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from _shared import pct, print_table

from kubescaler.adapters.lockclient import LockClient
from kubescaler.adapters.redlock import Redlock, master_client
from kubescaler.devstack.proc import free_port
from kubescaler.devstack.redis import RedisServer
from kubescaler.devstack.services import Service, start_service
from kubescaler.settings import LockSettings, RedisSettings, Settings


def keeper(settings: Settings, name: str, logs: Path) -> Service:
    """One `kubescaler lock-keeper` process on the benchmark's Redis servers."""
    env = {
        "KUBESCALER_REDIS_URL": settings.redis.url,
        "KUBESCALER_REDIS_LOCK_URLS": ",".join(settings.redis.lock_urls),
        "KUBESCALER_INSTANCE": name,
        "KUBESCALER_LOG_LEVEL": "warning",
    }
    return start_service("lock-keeper", env, logs, name=name)


async def direct(redlock: Redlock, n: int) -> list[float]:
    times = []
    for _ in range(n):
        key, start = f"bench:{uuid.uuid4()}", time.perf_counter()
        assert (await redlock.acquire(key, "bench")).ok
        times.append(time.perf_counter() - start)
        await redlock.release(key, "bench")
    return times


async def event_path(locks: LockClient, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        await locks.acquire(uuid.uuid4(), uuid.uuid4(), "bench")
        times.append(time.perf_counter() - start)
    return times


async def throughput(locks: LockClient, n: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await locks.acquire(uuid.uuid4(), uuid.uuid4(), "bench")

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - start)


async def measure(
    settings: Settings, n: int, concurrency: int, workdir: Path
) -> list[tuple[str, str]]:
    masters = [master_client(u, 0.25) for u in settings.redis.lock_urls]
    redlock = Redlock(masters, 60_000, 0.01, 250)
    rows: list[tuple[str, str]] = []
    workers = [keeper(settings, "bench-w0", workdir)]
    try:
        async with LockClient(settings, name="bench") as locks:
            await event_path(locks, 50)  # warm up connections and scripts
            await direct(redlock, 50)
            d, e = await direct(redlock, n), await event_path(locks, n)
            rows += [
                (
                    "direct Redlock acquire, 3 masters: p50 / p99 ms",
                    f"{pct(d, 0.5):.2f} / {pct(d, 0.99):.2f}",
                ),
                (
                    "event path acquire round trip: p50 / p99 ms",
                    f"{pct(e, 0.5):.2f} / {pct(e, 0.99):.2f}",
                ),
                (
                    "event path overhead over direct, p50 ms",
                    f"{statistics.median(e) * 1000 - statistics.median(d) * 1000:.2f}",
                ),
            ]
            rate1 = await throughput(locks, n * 2, concurrency)
            rows.append((f"acquires/s, 1 worker (concurrency {concurrency})", f"{rate1:.0f}"))
            workers.append(keeper(settings, "bench-w1", workdir))
            rate2 = await throughput(locks, n * 2, concurrency)
            rows.append((f"acquires/s, 2 workers (concurrency {concurrency})", f"{rate2:.0f}"))
            rows.append(("acquires/s per worker with 2 workers", f"{rate2 / 2:.0f}"))
    finally:
        for worker in workers:
            worker.stop()
        await redlock.aclose()
    return rows


def run(n: int = 1000, concurrency: int = 64) -> list[tuple[str, str]]:
    """Start the redis-servers, measure, stop them; the table's rows."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-locks-"))
    servers = [RedisServer(free_port(), workdir / f"redis{i}", persist=False) for i in range(4)]
    try:
        for server in servers:
            server.start_ready()
        settings = Settings(
            redis=RedisSettings(url=servers[0].url, lock_urls=[s.url for s in servers[1:]]),
            lock=LockSettings(),
        )
        return asyncio.run(measure(settings, n, concurrency, workdir))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--n", type=int, default=1000, help="sequential samples per path")
    args.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    opts = args.parse_args()
    print_table(run(opts.n, opts.concurrency))
    print(
        f"\nn={opts.n} sequential samples; {os.cpu_count()} CPUs; "
        f"client, workers and 4 redis-servers share the machine"
    )


if __name__ == "__main__":
    main()
