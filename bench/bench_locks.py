"""Lock round trips: the event path (client -> stream -> lock-keeper -> reply) vs direct Redlock.

Starts its own redis-servers (one for streams and state, three Redlock masters) on free ports
and lock-keeper worker processes (`kubescaler lock-keeper`), measures, prints a table, stops
everything. Not a test: numbers depend on the machine.

- latency: sequential acquires on fresh pairs, direct and event path alternating in blocks
  of 100 so both see the same moments of the machine; p50/p99 and the ratio of the p50s; and
  where the event path's time goes: the keeper's steps (its ``kubescaler_lock_step_seconds``)
  and the rest (the publish, the keeper's read, the reply).
- open loop: acquires started on a fixed schedule (``--rate`` per second for ``--seconds``),
  each timed from its scheduled start, so a stall shows in the tail instead of slowing the
  offer down.
- throughput: ``--concurrency`` acquires in flight, one lock-keeper, then two.
- afterwards the lock log of the whole run is checked with the replay verifier.

    uv run python bench/bench_locks.py [--n 1000] [--concurrency 64] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path

from _shared import cpu_busy, cpu_seconds, metric, pct, print_table, run_client

from kubescaler.adapters.lockclient import LockClient
from kubescaler.adapters.redlock import Redlock, master_client
from kubescaler.devstack.proc import free_port
from kubescaler.devstack.redis import RedisServer
from kubescaler.devstack.services import Service, start_service
from kubescaler.domain.locks import verify
from kubescaler.entrypoints.replay import from_redis
from kubescaler.settings import LockSettings, RedisSettings, Settings

BLOCK = 100
STEPS = ("claim", "vote", "fence", "commit")


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


async def alternating(
    redlock: Redlock, locks: LockClient, n: int
) -> tuple[list[float], list[float]]:
    """``n`` samples of each path, in alternating blocks of BLOCK."""
    d: list[float] = []
    e: list[float] = []
    for _ in range(max(1, n // BLOCK)):
        d += await direct(redlock, BLOCK)
        e += await event_path(locks, BLOCK)
    return d, e


async def open_loop(locks: LockClient, rate: float, seconds: float) -> tuple[list[float], int]:
    """Acquires started every 1/rate s for ``seconds``; latency from the scheduled start
    (``perf_counter``: uvloop's ``loop.time()`` counts whole milliseconds)."""
    times: list[float] = []
    errors = 0

    async def one(due: float) -> None:
        nonlocal errors
        try:
            await locks.acquire(uuid.uuid4(), uuid.uuid4(), "bench")
        except Exception:
            errors += 1
            return
        times.append(time.perf_counter() - due)

    start = time.perf_counter() + 0.1
    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return times, errors


async def throughput(locks: LockClient, n: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await locks.acquire(uuid.uuid4(), uuid.uuid4(), "bench")

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - start)


async def with_cpu(run: Awaitable[float], workers: list[Service]) -> tuple[float, str]:
    """``run``'s result, and the CPU it took: the keepers', this client's, the machine's."""
    pids = [w.popen.pid for w in workers if w.popen is not None]
    k0, c0, (b0, t0) = sum(map(cpu_seconds, pids)), sum(os.times()[:2]), cpu_busy()
    wall = time.perf_counter()
    result = await run
    wall = time.perf_counter() - wall
    k1, c1, (b1, t1) = sum(map(cpu_seconds, pids)), sum(os.times()[:2]), cpu_busy()
    used = (
        f"keepers {100 * (k1 - k0) / wall:.0f}% of a core, client {100 * (c1 - c0) / wall:.0f}%, "
        f"machine {100 * (b1 - b0) / (t1 - t0):.0f}% busy"
    )
    return result, used


def step_totals(url: str) -> dict[str, tuple[float, float]]:
    """(seconds, count) of each keeper step so far, from its /metrics."""
    name = "kubescaler_lock_step_seconds"
    return {
        step: (
            metric(url, f'{name}_sum{{step="{step}"}}'),
            metric(url, f'{name}_count{{step="{step}"}}'),
        )
        for step in STEPS
    }


def split(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], e: list[float]
) -> str:
    """Each step's mean over the run between ``before`` and ``after`` (one command a batch),
    and what is left of the mean round trip ``e``: publish, read, reply."""
    means = {
        step: (after[step][0] - before[step][0]) / max(after[step][1] - before[step][1], 1)
        for step in STEPS
    }
    rest = sum(e) / len(e) - sum(means.values())
    return " / ".join(f"{1000 * means[s]:.2f}" for s in STEPS) + f" | {1000 * rest:.2f}"


def ms(samples: list[float]) -> str:
    return f"{pct(samples, 0.5):.2f} / {pct(samples, 0.99):.2f}"


async def measure(
    settings: Settings, n: int, concurrency: int, rate: float, workdir: Path
) -> list[tuple[str, str]]:
    masters = [master_client(u, 0.25) for u in settings.redis.lock_urls]
    redlock = Redlock(masters, 60_000, 0.01, 250)
    rows: list[tuple[str, str]] = []
    workers = [keeper(settings, "bench-w0", workdir)]
    try:
        async with LockClient(settings, name="bench") as locks:
            await alternating(redlock, locks, 2 * BLOCK)  # warm up connections and scripts
            # the client stands in for a stream process, which freezes its start-up heap
            # (entrypoints/serve.py): without this a full collection of the benchmark's own
            # heap stalled every request in flight for ~50 ms, which is the client, not the lock
            gc.freeze()
            before = step_totals(workers[0].url)
            d, e = await alternating(redlock, locks, n)
            ratio = pct(e, 0.5) / pct(d, 0.5)
            rows += [
                ("direct Redlock acquire, 3 masters: p50 / p99 ms", ms(d)),
                ("event path acquire round trip: p50 / p99 ms", ms(e)),
                ("event path p50 / direct p50 (same run, alternating blocks)", f"{ratio:.1f}x"),
                (
                    "event path, where a round trip goes: keeper claim / vote / fence / commit "
                    "means | the rest (publish, read, reply) ms",
                    split(before, step_totals(workers[0].url), e),
                ),
            ]
            seconds = 10.0
            offered, errors = await open_loop(locks, rate, seconds)
            rows.append(
                (
                    f"event path at {rate:.0f} acquires/s offered for {seconds:.0f} s: "
                    "p50 / p99 ms (errors)",
                    f"{ms(offered)} ({errors})",
                )
            )
            rate1, cpu1 = await with_cpu(throughput(locks, n * 4, concurrency), workers)
            rows.append(
                (f"acquires/s, 1 worker (concurrency {concurrency}) (CPU)", f"{rate1:.0f} ({cpu1})")
            )
            workers.append(keeper(settings, "bench-w1", workdir))
            rate2, cpu2 = await with_cpu(throughput(locks, n * 4, concurrency), workers)
            rows.append(
                (
                    f"acquires/s, 2 workers (concurrency {concurrency}) (CPU)",
                    f"{rate2:.0f}, {rate2 / rate1:.2f}x one worker ({cpu2})",
                )
            )
    finally:
        for worker in workers:
            worker.stop()
        await redlock.aclose()
    records = list(from_redis(settings.redis.url, settings.lock.log_stream, None, None))
    violations = verify(records)
    rows.append(
        (
            "replay --verify of this run's lock log",
            f"{len(records)} records, {len(violations)} violations",
        )
    )
    return rows


def run(n: int = 1000, concurrency: int = 64, rate: float = 500.0) -> list[tuple[str, str]]:
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
        return run_client(measure(settings, n, concurrency, rate, workdir))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--n", type=int, default=1000, help="sequential samples per path")
    args.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    args.add_argument("--rate", type=float, default=500.0, help="open-loop acquires per second")
    opts = args.parse_args()
    print_table(run(opts.n, opts.concurrency, opts.rate))
    print(
        f"\nn={opts.n} sequential samples per path; {os.cpu_count()} CPUs; "
        f"client, workers and 4 redis-servers share the machine"
    )


if __name__ == "__main__":
    main()
