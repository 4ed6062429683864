"""One stream process at the default rate (64 KiB x 32 events/s, about 2.1 MB/s per client).

Starts its own Redis, Cassandra, base, main, lock-keeper and one `kubescaler stream` on free
ports, creates bound pairs, then for each N opens N SSE clients on distinct pairs that read as
fast as they can (raw asyncio sockets, one process), and measures over a fixed window: the
aggregate MB/s received, the stream process's CPU-seconds per GB sent (utime + stime from
/proc/<pid>/stat), and drops (its /metrics counters). Reports the most clients held with under
1% drops. Clients, nginx-less stream process and backends share the machine's cores.

    uv run python bench/bench_stream.py [--clients 1,5,10,20,40,80,120,160] [--window 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
import uuid

import httpx
from _shared import Backend, Row, backend, cpu_seconds, metric, print_table

MB = 1_000_000
RATE = 65_536 * 32 / MB  # default payload MB/s per client, before SSE/JSON framing


async def client(port: int, path: str, counter: list[int], stop: asyncio.Event) -> int:
    """One SSE client on a raw socket: send the request, count every byte until ``stop``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status == 200:
        while not stop.is_set():
            chunk = await reader.read(1 << 20)
            if not chunk:
                break
            counter[0] += len(chunk)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return status


async def round_(stack: Backend, pairs: list[tuple[str, str]], window: float) -> dict[str, float]:
    """N = len(pairs) clients: warm up 2 s, then measure ``window`` seconds."""
    stream, pid = stack.stream, stack.stream.popen.pid  # type: ignore[union-attr]
    counter, stop = [0], asyncio.Event()
    tasks = [
        asyncio.create_task(
            client(
                stream.port, f"/stream/{u}/{p}?session=bench-{uuid.uuid4().hex[:12]}", counter, stop
            )
        )
        for u, p in pairs
    ]
    await asyncio.sleep(2.0)
    m = stream.url
    b0, c0, t0, own0 = counter[0], cpu_seconds(pid), time.perf_counter(), sum(os.times()[:2])
    sent0 = metric(m, "kubescaler_stream_sent_bytes_total")
    ev0 = metric(m, "kubescaler_stream_sent_events_total")
    dr0 = metric(m, "kubescaler_stream_dropped_events_total")
    await asyncio.sleep(window)
    b1, c1, t1, own1 = counter[0], cpu_seconds(pid), time.perf_counter(), sum(os.times()[:2])
    sent = metric(m, "kubescaler_stream_sent_bytes_total") - sent0
    events = metric(m, "kubescaler_stream_sent_events_total") - ev0
    dropped = metric(m, "kubescaler_stream_dropped_events_total") - dr0
    live = metric(m, "kubescaler_stream_connections")
    stop.set()
    statuses = await asyncio.gather(*tasks, return_exceptions=True)
    ok = sum(1 for s in statuses if s == 200)
    await asyncio.sleep(1.0)  # let the server notice the disconnects
    return {
        "clients": len(pairs),
        "ok": ok,
        "live": live,
        "mb_s": (b1 - b0) / (t1 - t0) / MB,
        "cpu_s_per_gb": (c1 - c0) / (sent / 1e9) if sent else float("nan"),
        "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
        "client_cpu_pct": 100 * (own1 - own0) / (t1 - t0),
        "drop_pct": 100 * dropped / (events + dropped) if events + dropped else 0.0,
    }


def make_pairs(stack: Backend, need: int) -> list[tuple[str, str]]:
    with httpx.Client(base_url=stack.main.url, timeout=120) as main:
        r = main.post(
            "/testdata",
            params={
                "users": need,
                "profiles": need // 2 + 10,
                "users_per_profile": 1,
                "shared_users": need // 2 + 1,
                "profiles_per_shared_user": 2,
            },
        )
        r.raise_for_status()
        pairs = [(s["id"], p) for s in main.get("/suggested").json() for p in s["profiles"]]
    assert len(pairs) >= need, f"only {len(pairs)} bound pairs"
    return pairs


def run(stack: Backend, counts: list[int], window: float) -> list[Row]:
    pairs = make_pairs(stack, sum(counts))
    results = []
    for n in counts:
        began = time.perf_counter()
        res = asyncio.run(round_(stack, pairs[:n], window))
        pairs = pairs[n:]  # fresh pairs: the last round's locks stay until their TTL
        results.append(res)
        print(
            f"bench stream: {n:>3} clients  {res['mb_s']:7.1f} MB/s  "
            f"{res['cpu_pct']:5.0f}% CPU (clients {res['client_cpu_pct']:.0f}%)  "
            f"drops {res['drop_pct']:.2f}%  "
            f"({time.perf_counter() - began:.0f} s)",
            flush=True,
        )
        if res["drop_pct"] >= 5:
            break
    rows: list[Row] = []
    for r in results:
        n = int(r["clients"])
        rows.append(
            (
                f"stream, {n} full-speed clients: MB/s total (per client) | CPU-s/GB | drops",
                f"{r['mb_s']:.1f} ({r['mb_s'] / n:.2f}) | {r['cpu_s_per_gb']:.1f} "
                f"({r['cpu_pct']:.0f}% of a core; clients {r['client_cpu_pct']:.0f}%) | "
                f"{r['drop_pct']:.2f}%",
            )
        )
    held = [int(r["clients"]) for r in results if r["drop_pct"] < 1 and r["ok"] == r["clients"]]
    last_ok = max(held, default=0)
    tried = int(results[-1]["clients"])
    rows.append(
        (
            "stream: most clients held at the default rate, drops < 1%",
            f"{last_ok}" + (" (the largest N tried)" if last_ok == tried else ""),
        )
    )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--clients", default="1,5,10,20,40,80,120,160", help="comma-separated client counts"
    )
    p.add_argument("--window", type=float, default=8.0, help="measured seconds per count")
    opts = p.parse_args()
    counts = [int(c) for c in opts.clients.split(",")]
    with backend() as stack:
        rows = run(stack, counts, opts.window)
    print()
    print_table(rows)
    print(
        f"\nRATE {RATE:.2f} MB/s of payload per client (+ SSE/JSON framing); one stream process;"
        " the clients run in this process on the same cores."
    )


if __name__ == "__main__":
    main()
