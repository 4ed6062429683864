"""Lock round trips: the event path (client -> stream -> lock-keeper -> reply) vs direct Redlock.

Starts its own redis-servers (one for streams and state, three Redlock masters) on free ports
and lock-keeper worker processes (`kubescaler lock-keeper`), measures, prints a table, stops
everything. Not a test: numbers depend on the machine.

- latency: sequential acquires on fresh pairs, direct and event path alternating in blocks
  of 100 so both see the same moments of the machine; p50/p99 and the ratio of the p50s; and
  where the event path's time goes: the keeper's steps (its ``kubescaler_lock_step_seconds``)
  and the rest (the publish, the keeper's read, the reply).
- open loop: acquires started on a fixed schedule (``--rate`` per second for 10 s), each
  timed from its scheduled start, so a stall shows in the tail instead of slowing the offer
  down; first on the direct path (the reference: one hop at that rate, on this machine),
  then on the event path.
- throughput: ``--concurrency`` acquires in flight, one lock-keeper, then two; and, between
  those, three rounds of one then two, each held to the CPU limit of its pod in
  ``manifests/`` (a cgroup of its own, removed afterwards; needs root, else the row says why).
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from statistics import median

from _shared import (
    ROOT,
    NoCpuLimit,
    cpu_busy,
    cpu_limit_of,
    cpu_limited,
    cpu_seconds,
    metric,
    pct,
    print_table,
    run_client,
)

from kubescaler.adapters.lockclient import LockClient
from kubescaler.adapters.redlock import Redlock, master_client
from kubescaler.domain.locks import verify
from kubescaler.entrypoints.replay import from_redis
from kubescaler.settings import LockSettings, RedisSettings, Settings
from kubescaler_dev.proc import Proc, free_port
from kubescaler_dev.redis import RedisServer
from kubescaler_dev.services import Service, start_service

BLOCK = 100
#: Rounds of one keeper, then two, at the pod's CPU limit.
ROUNDS = 3
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


async def open_loop(
    acquire: Callable[[], Awaitable[bool]], rate: float, seconds: float
) -> tuple[list[float], int]:
    """``acquire()`` started every 1/rate s for ``seconds``; latency from the scheduled start
    (``perf_counter``: uvloop's ``loop.time()`` counts whole milliseconds). An acquire that
    raises or returns False is an error, not a sample."""
    times: list[float] = []
    errors = 0

    async def one(due: float) -> None:
        nonlocal errors
        try:
            ok = await acquire()
        except Exception:
            ok = False
        if ok:
            times.append(time.perf_counter() - due)
        else:
            errors += 1

    start = time.perf_counter() + 0.1
    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return times, errors


async def offered(
    redlock: Redlock, locks: LockClient, rate: float, seconds: float
) -> list[tuple[str, str]]:
    """The open loop on the direct path, then on the event path, each after a second's warm-up
    (the direct path's pools open a connection per acquire in flight: counted, that was a
    300 ms tail). The direct row is the reference: what one hop to the masters costs at this
    rate on this machine, from the same client."""

    async def direct_one() -> bool:
        return (await redlock.acquire(f"bench:{uuid.uuid4()}", "bench")).ok

    async def event_one() -> bool:
        await locks.acquire(uuid.uuid4(), uuid.uuid4(), "bench")
        return True

    rows = []
    for name, acquire in (("direct Redlock", direct_one), ("event path", event_one)):
        await open_loop(acquire, rate, 1.0)
        times, errors = await open_loop(acquire, rate, seconds)
        rows.append(
            (
                f"{name} at {rate:.0f} acquires/s offered for {seconds:.0f} s: "
                "p50 / p99 ms (errors)",
                f"{ms(times)} ({errors})",
            )
        )
    return rows


async def throughput(locks: LockClient, n: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await locks.acquire(uuid.uuid4(), uuid.uuid4(), "bench")

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - start)


class Usage:
    """The CPU a run took, by who took it: the keepers, the stream Redis, the three masters
    (together), this client; and how busy the whole machine was."""

    def __init__(self, servers: list[RedisServer]) -> None:
        self.stream_redis = _pid(servers[0])
        self.masters = [_pid(s) for s in servers[1:]]

    async def of(self, run: Awaitable[float], workers: list[Service]) -> tuple[float, str]:
        """``run``'s result, and the CPU each took meanwhile, in % of a core."""
        groups = {
            "keepers": [_pid(w) for w in workers],
            "stream Redis": [self.stream_redis],
            "masters": self.masters,
            "client": [os.getpid()],
        }
        before, (b0, t0) = {k: sum(map(cpu_seconds, v)) for k, v in groups.items()}, cpu_busy()
        wall = time.perf_counter()
        result = await run
        wall = time.perf_counter() - wall
        after, (b1, t1) = {k: sum(map(cpu_seconds, v)) for k, v in groups.items()}, cpu_busy()
        used = ", ".join(f"{k} {100 * (after[k] - before[k]) / wall:.0f}%" for k in groups)
        return result, f"{used} of a core; machine {100 * (b1 - b0) / (t1 - t0):.0f}% busy"


async def at_pod_limit(
    usage: Usage,
    locks: LockClient,
    workers: list[Service],
    second: Callable[[], None],
    n: int,
    concurrency: int,
) -> list[tuple[str, str]]:
    """Acquires/s of the one keeper in ``workers``, then of two (``second`` starts the other,
    stopped again after), each held to its pod's CPU limit (its own cgroup, the limit read from
    the manifest), as replicas in a cluster are: whether another keeper adds capacity once a
    keeper is what limits, which the unlimited rows on this machine's 2 cores (shared with the
    client and four redis-servers) cannot show. ROUNDS rounds of one then two, so that the
    machine's moments fall on both alike; the medians, and the range of the ratio."""
    millicores = cpu_limit_of(ROOT / "manifests/base/lock-keeper.yaml", "lock-keeper")
    label = f"each held to its pod's CPU limit ({millicores}m), median of {ROUNDS} rounds"
    ones: list[float] = []
    twos: list[float] = []
    try:
        with cpu_limited(_pid(workers[0]), millicores, "w0"):
            for _ in range(ROUNDS):
                one, cpu1 = await usage.of(throughput(locks, n, concurrency), workers)
                ones.append(one)
                second()
                try:
                    with cpu_limited(_pid(workers[1]), millicores, "w1"):
                        two, cpu2 = await usage.of(throughput(locks, n, concurrency), workers)
                finally:
                    workers.pop().stop()
                twos.append(two)
    except NoCpuLimit as exc:
        return [
            ("acquires/s, 1 and 2 workers each held to a pod's CPU limit", f"not measured: {exc}")
        ]
    ratios = sorted(t / o for o, t in zip(ones, twos, strict=True))
    return [
        (f"acquires/s, 1 worker {label} (CPU, last round)", f"{median(ones):.0f} ({cpu1})"),
        (
            f"acquires/s, 2 workers {label} (CPU, last round)",
            f"{median(twos):.0f}, {median(ratios):.2f}x one "
            f"({ratios[0]:.2f}-{ratios[-1]:.2f}x in the rounds) ({cpu2})",
        ),
    ]


def _pid(proc: Proc) -> int:
    assert proc.popen is not None, f"{proc.name} is not running"
    return proc.popen.pid


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
    settings: Settings, usage: Usage, n: int, concurrency: int, rate: float, workdir: Path
) -> list[tuple[str, str]]:
    masters = [master_client(u, 0.25) for u in settings.redis.lock_urls]
    for master in masters:  # room for the open loop's acquires in flight: a stall of the direct
        master.connection_pool.max_connections = 2000  # path is latency, not a full pool (100)
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
            rows += await offered(redlock, locks, rate, 10.0)
            rate1, cpu1 = await usage.of(throughput(locks, n * 10, concurrency), workers)
            rows.append(
                (f"acquires/s, 1 worker (concurrency {concurrency}) (CPU)", f"{rate1:.0f} ({cpu1})")
            )
            second = lambda: workers.append(keeper(settings, "bench-w1", workdir))  # noqa: E731
            rows += await at_pod_limit(usage, locks, workers, second, n * 10, concurrency)
            second()
            rate2, cpu2 = await usage.of(throughput(locks, n * 10, concurrency), workers)
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
        return run_client(measure(settings, Usage(servers), n, concurrency, rate, workdir))
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
