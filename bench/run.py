"""Every benchmark, one table: `just bench`.

Runs bench_locks and bench_fencing (their own redis-servers and lock-keepers), then starts one
private backend (Redis, Cassandra, base, main, a lock-keeper, one stream process, all on free
ports) for
bench_stream, bench_main, bench_burst (through an nginx entry point) and bench_many (a second,
low-rate stream process), checks the backend's lock log with the replay verifier, stops it,
and prints the machine, the versions, every measure and how to reproduce. Not a test: the
numbers depend on the machine and on what else runs.

    uv run python bench/run.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import bench_burst
import bench_fencing
import bench_locks
import bench_main
import bench_many
import bench_stream
from _shared import Row, backend, machine, print_table

from kubescaler.domain.locks import verify
from kubescaler.entrypoints.replay import from_redis
from kubescaler.settings import LockSettings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    opts = p.parse_args()
    started = time.perf_counter()
    rows: list[Row] = machine()
    rows.append(("date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")))
    print("bench: locks ...", flush=True)
    rows += bench_locks.run(n=200 if opts.quick else 1000, concurrency=64, rate=500)
    print("bench: fencing ...", flush=True)
    rows += bench_fencing.run(n=200 if opts.quick else 1000, concurrency=64)
    counts = [1, 10, 40, 160] if opts.quick else bench_stream.COUNTS
    with backend() as stack:
        print("bench: stream ...", flush=True)
        rows += bench_stream.run(stack, counts, window=4 if opts.quick else 8)
        print("bench: main ...", flush=True)
        rows += bench_main.run(stack, rate=200, duration=5 if opts.quick else 20, stacks=True)
        print("bench: burst ...", flush=True)
        rows += bench_burst.run(stack, clients=200)
        print("bench: many ...", flush=True)
        if opts.quick:
            rows += bench_many.run(stack, streams=1000, burst=500, hold_s=20)
        else:
            rows += bench_many.run(stack, streams=10_000, burst=5_000, hold_s=120)
        records = list(from_redis(stack.redis.url, LockSettings().log_stream, None, None))
        rows.append(
            (
                "replay --verify of the backend's lock log (stream, burst, many)",
                f"{len(records)} records, {len(verify(records))} violations",
            )
        )
    load1, load5, _ = os.getloadavg()
    rows.append(("machine: load average at end (1 / 5 min)", f"{load1:.2f} / {load5:.2f}"))
    print()
    print_table(rows)
    print(
        f"\nTook {time.perf_counter() - started:.0f} s. Every server ran on this machine on free "
        f"ports, sharing its {os.cpu_count()} cores with the load generators (one Python process "
        "per benchmark).\nReproduce: `just bench` (= uv run python bench/run.py); one part: "
        "uv run python bench/bench_{locks,fencing,stream,main,burst,many}.py --help."
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
