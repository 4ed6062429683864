"""Many low-rate streams on one stream process and one lock-keeper, held with their refreshes.

On a backend (Redis, Cassandra, base, main, one lock-keeper) a second stream process runs at a
low rate (one 64-byte event a second per stream; lock TTL 60 s, refresh every 20 s). Clients
(raw asyncio sockets, one process) open streams on distinct bound pairs, ``--concurrency`` at
a time: first a burst of ``--burst`` opens, whose statuses are counted (every one should be
granted: no 503), then the rest up to ``--streams``. All are held for ``--hold`` seconds, so
every stream's lock is refreshed several times, while the clients read their events. Reported:
the burst's statuses and rate, the streams still live at the end, the stream process's refresh
failures and lock outcomes (its /metrics), its resident memory per stream and CPU share.

    uv run python bench/bench_many.py [--streams 10000] [--burst 5000] [--hold 120]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
import uuid
from dataclasses import dataclass, field

import httpx
from _shared import (
    REFUSALS,
    Backend,
    Row,
    backend,
    cpu_seconds,
    print_table,
    refusal,
    rss_bytes,
    run_client,
)

LOW_RATE = {
    "KUBESCALER_STREAM_EVENTS_PER_S": "1",
    "KUBESCALER_STREAM_EVENT_BYTES": "64",
    "KUBESCALER_LOG_LEVEL": "warning",
}


@dataclass
class Held:
    """What the clients saw."""

    statuses: dict[str, int] = field(default_factory=dict)
    events: int = 0
    ended: dict[str, int] = field(default_factory=dict)
    live: int = 0


async def hold(port: int, path: str, held: Held, opened: asyncio.Event) -> None:
    """One client: open the stream, count its events until cancelled; note how it ended."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    except (OSError, asyncio.IncompleteReadError):
        held.statuses["no answer"] = held.statuses.get("no answer", 0) + 1
        opened.set()
        return
    status = "200" if head.split(b" ", 2)[1] == b"200" else await refusal(head, reader)
    held.statuses[status] = held.statuses.get(status, 0) + 1
    opened.set()
    if status != "200":
        writer.close()
        return
    held.live += 1
    ended = "open at the end"
    try:
        while chunk := await reader.read(65536):
            held.events += chunk.count(b"event: data")
            for name in (b"lock-lost", b"superseded", b"reconnect"):
                if b"event: " + name in chunk:
                    ended = name.decode()
        if ended == "open at the end":
            ended = "closed by the server"
    except asyncio.CancelledError:
        pass
    finally:
        held.live -= 1
        held.ended[ended] = held.ended.get(ended, 0) + 1
        writer.close()


async def open_many(
    port: int,
    pairs: list[tuple[str, str]],
    held: Held,
    concurrency: int,
    tasks: list[asyncio.Task[None]],
) -> float:
    """Open a stream on every pair, ``concurrency`` opens in flight; seconds it took."""
    gate = asyncio.Semaphore(concurrency)
    start = time.perf_counter()

    async def one(user: str, profile: str) -> None:
        async with gate:
            opened = asyncio.Event()
            path = f"/stream/{user}/{profile}?session=many-{uuid.uuid4().hex[:12]}"
            tasks.append(asyncio.create_task(hold(port, path, held, opened)))
            await opened.wait()

    await asyncio.gather(*(one(u, p) for u, p in pairs))
    return time.perf_counter() - start


def metrics(url: str) -> dict[str, float]:
    """The stream process's unlabelled and labelled samples, by their full text."""
    out: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("kubescaler_stream") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def measure(
    stack: Backend, streams: int, burst: int, hold_s: float, concurrency: int
) -> list[Row]:
    pairs = stack.new_pairs(streams // 2 + 1)[:streams]
    svc = stack.add_stream(LOW_RATE)
    pid = svc.popen.pid  # type: ignore[union-attr]
    rss0 = rss_bytes(pid)
    held = Held()
    tasks: list[asyncio.Task[None]] = []
    burst_s = await open_many(svc.port, pairs[:burst], held, concurrency, tasks)
    burst_statuses = dict(held.statuses)
    print(f"bench many: burst of {burst} in {burst_s:.1f} s: {burst_statuses}", flush=True)
    rest_s = await open_many(svc.port, pairs[burst:], held, concurrency, tasks)
    rest_statuses = {k: v - burst_statuses.get(k, 0) for k, v in held.statuses.items()}
    print(f"bench many: {held.live} live after {rest_s:.1f} s more: {rest_statuses}", flush=True)
    opened = metrics(svc.url)
    await asyncio.sleep(2)
    rss1, live = rss_bytes(pid), held.live
    before, cpu0, t0 = metrics(svc.url), cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(hold_s)
    after, cpu1, t1 = metrics(svc.url), cpu_seconds(pid), time.perf_counter()
    live_end = held.live
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    outcome = 'kubescaler_stream_lock_outcomes_total{action="refresh",result="%s"}'
    refreshed = delta(outcome % "refreshed")
    not_refreshed = sum(delta(outcome % r) for r in ("lost", "failed"))
    failures = "kubescaler_stream_refresh_failures_total"
    print(f"bench many: {live_end} live at the end; ended {held.ended}", flush=True)
    for kind, detail in REFUSALS.items():
        print(f"bench many: a {kind} said: {detail}", flush=True)

    def counts(statuses: dict[str, int]) -> str:
        return ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()) if v)

    return [
        (
            f"many: burst of {burst} opens ({concurrency} in flight) on one stream process: "
            "statuses | opens/s",
            f"{counts(burst_statuses)} | {burst / burst_s:.0f}",
        ),
        (
            f"many: the next {len(pairs) - burst} opens while those refresh: statuses | opens/s "
            "| refresh failures meanwhile",
            f"{counts(rest_statuses)} | {(len(pairs) - burst) / rest_s:.0f} | "
            f"{opened.get(failures, 0.0):.0f}",
        ),
        (
            f"many: {live} low-rate streams held {hold_s:.0f} s: live at the end | refreshed "
            "| lost or failed | refresh failures",
            f"{live_end} | {refreshed:.0f} | {not_refreshed:.0f} | {delta(failures):.0f}",
        ),
        (
            f"many: {live} streams: stream process memory per stream | CPU | events/s sent",
            f"{(rss1 - rss0) / max(live, 1) / 1024:.1f} KiB | "
            f"{100 * (cpu1 - cpu0) / (t1 - t0):.0f}% of a core | "
            f"{delta('kubescaler_stream_sent_events_total') / (t1 - t0):.0f}",
        ),
    ]


def run(
    stack: Backend,
    streams: int = 10_000,
    burst: int = 5_000,
    hold_s: float = 120.0,
    concurrency: int = 200,
) -> list[Row]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # one socket per client; the stream process inherits the limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return run_client(measure(stack, streams, burst, hold_s, concurrency))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--streams", type=int, default=10_000, help="streams held (default 10000)")
    p.add_argument("--burst", type=int, default=5_000, help="opens counted as the burst")
    p.add_argument("--hold", type=float, default=120.0, help="seconds held (default 120)")
    p.add_argument("--concurrency", type=int, default=200, help="opens in flight (default 200)")
    opts = p.parse_args()
    with backend() as stack:
        rows = run(stack, opts.streams, opts.burst, opts.hold, opts.concurrency)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
