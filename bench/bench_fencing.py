"""Fencing tokens: the quorum path (tokens from the Redlock masters, written back to a quorum)
against the older stream path (one INCR on the stream Redis), interleaved in one run.

Starts its own redis-servers (one for streams and state, three Redlock masters) and two
lock-keeper processes, one per path (``KUBESCALER_LOCK_FENCING``), each on a command stream of
its own; one requester per path. Sequential acquires on fresh pairs alternate between the
paths in blocks of 100, and throughput rounds (``--concurrency`` in flight) alternate too, so
both see the same moments of the machine. Prints p50/p99, acquires/s and the ratios; then
checks each path's lock log with the replay verifier.

    uv run python bench/bench_fencing.py [--n 1000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
from pathlib import Path
from statistics import median

from _shared import pct, print_table, run_client
from bench_locks import BLOCK, event_path, ms, throughput

from kubescaler.adapters.lockclient import LockClient
from kubescaler.domain.lockrules import Fencing
from kubescaler.domain.locks import verify
from kubescaler.entrypoints.replay import from_redis
from kubescaler.settings import LockSettings, RedisSettings, Settings
from kubescaler_dev.proc import free_port
from kubescaler_dev.redis import RedisServer
from kubescaler_dev.services import Service, start_service

PATHS: tuple[Fencing, Fencing] = ("quorum", "stream")
ROUNDS = 3


def settings_of(path: Fencing, state: str, masters: list[str]) -> Settings:
    lock = LockSettings(
        command_stream=f"bench:{path}:commands", log_stream=f"bench:{path}:log", fencing=path
    )
    return Settings(redis=RedisSettings(url=state, lock_urls=masters), lock=lock)


def keeper(s: Settings, name: str, logs: Path) -> Service:
    env = {
        "KUBESCALER_REDIS_URL": s.redis.url,
        "KUBESCALER_REDIS_LOCK_URLS": ",".join(s.redis.lock_urls),
        "KUBESCALER_LOCK_COMMAND_STREAM": s.lock.command_stream,
        "KUBESCALER_LOCK_LOG_STREAM": s.lock.log_stream,
        "KUBESCALER_LOCK_FENCING": s.lock.fencing,
        "KUBESCALER_INSTANCE": name,
        "KUBESCALER_LOG_LEVEL": "warning",
    }
    return start_service("lock-keeper", env, logs, name=name)


async def measure(by_path: dict[str, Settings], n: int, concurrency: int) -> list[tuple[str, str]]:
    samples: dict[str, list[float]] = {p: [] for p in PATHS}
    rates: dict[str, list[float]] = {p: [] for p in PATHS}
    async with (
        LockClient(by_path["quorum"], name="bench-q") as q,
        LockClient(by_path["stream"], name="bench-s") as s,
    ):
        clients = {"quorum": q, "stream": s}
        for path in PATHS:  # warm up connections and scripts
            await event_path(clients[path], BLOCK)
        gc.freeze()
        for _ in range(max(1, n // BLOCK)):
            for path in PATHS:
                samples[path] += await event_path(clients[path], BLOCK)
        for _ in range(ROUNDS):
            for path in PATHS:
                rates[path].append(await throughput(clients[path], n * 5, concurrency))
    ratio = pct(samples["quorum"], 0.5) / pct(samples["stream"], 0.5)
    rq, rs = median(rates["quorum"]), median(rates["stream"])
    return [
        ("acquire, quorum fencing (tokens on the masters): p50 / p99 ms", ms(samples["quorum"])),
        ("acquire, stream fencing (the older INCR): p50 / p99 ms", ms(samples["stream"])),
        ("quorum p50 / stream p50 (same run, alternating blocks)", f"{ratio:.2f}x"),
        (
            f"acquires/s, quorum | stream, 1 worker each, concurrency {concurrency} "
            f"(median of {ROUNDS} alternating rounds)",
            f"{rq:.0f} | {rs:.0f} ({rq / rs:.2f}x)",
        ),
    ]


def run(n: int = 1000, concurrency: int = 64) -> list[tuple[str, str]]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-fencing-"))
    servers = [RedisServer(free_port(), workdir / f"redis{i}", persist=False) for i in range(4)]
    workers: list[Service] = []
    try:
        for server in servers:
            server.start_ready()
        state, masters = servers[0].url, [m.url for m in servers[1:]]
        by_path = {p: settings_of(p, state, masters) for p in PATHS}
        workers = [keeper(by_path[p], f"bench-{p}", workdir) for p in PATHS]
        rows = run_client(measure(by_path, n, concurrency))
        for path in PATHS:
            records = list(from_redis(state, by_path[path].lock.log_stream, None, None))
            rows.append(
                (
                    f"replay --verify of the {path} path's lock log",
                    f"{len(records)} records, {len(verify(records))} violations",
                )
            )
        return rows
    finally:
        for worker in workers:
            worker.stop()
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--n", type=int, default=1000, help="sequential samples per path")
    args.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    opts = args.parse_args()
    print_table(run(opts.n, opts.concurrency))


if __name__ == "__main__":
    main()
