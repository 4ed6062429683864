"""One stream process at the default rate (64 KiB x 32 events/s, about 2.1 MB/s per client),
side by side with the floor: a bare ASGI app sending the same frames on the same schedule.

Starts its own Redis, Cassandra, base, main, lock-keeper and one `kubescaler stream` on free
ports, and the floor app (``bench/floor_app.py``) through the same launcher and settings, so
both run on the same server, event loop and HTTP parser. For each N it opens N SSE clients
that read as fast as they can (raw sockets, one process on uvloop), first on the floor app,
then on the stream process (distinct bound pairs), and measures over a fixed window: MB/s
received, each server's CPU-seconds per GB received by its clients (utime + stime from
/proc/<pid>/stat, worker processes included), their ratio, and the stream's drops (its
/metrics counters). Then the same at the comparison counts on the other server stacks, and
reports the most clients the stream process held with under 1% drops.

    uv run python bench/bench_stream.py [--clients 1,5,10,...,800] [--window 8]
        [--compare 40,160] [--stacks]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
from _shared import (
    STACKS,
    Backend,
    Row,
    backend,
    metric,
    print_table,
    run_client,
    tree_cpu_split,
)
from floor_app import granian_argv

from kubescaler_dev.proc import free_port

#: The client counts of a full run: the usual steps, then on until drops pass HELD (capacity).
COUNTS = [1, 5, 10, 20, 40, 80, 120, 160, 240, 320, 400, 480, 560, 640, 800]
MB = 1_000_000
RATE = 65_536 * 32 / MB  # default payload MB/s per client, before SSE/JSON framing
HELD = 1.0  # drop % under which a count is held


@dataclass
class Target:
    """A server under test: where clients connect, whose CPU counts, where its metrics are."""

    name: str
    port: int
    pid: int
    metrics: str | None  # the stream's /metrics base URL; None for the floor


async def client(
    port: int, path: str, counter: list[int], answered: asyncio.Semaphore, stop: asyncio.Event
) -> int:
    """One SSE client on a raw socket: send the request, count every byte until ``stop``
    (``answered`` is released when the answer came)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    answered.release()
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


async def round_(target: Target, paths: list[str], window: float) -> dict[str, float]:
    """N = len(paths) clients: warm up until every client has its answer (the stream's opens
    take a lock each) and 2 s more, then measure ``window`` seconds."""
    counter, answered, stop = [0], asyncio.Semaphore(0), asyncio.Event()
    tasks = [asyncio.create_task(client(target.port, p, counter, answered, stop)) for p in paths]

    async def all_answered() -> None:
        for _ in paths:
            await answered.acquire()

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_answered(), 30)
    await asyncio.sleep(2.0)
    m = target.metrics

    def counters() -> tuple[float, float]:
        """(sent, dropped) events; NaN when the scrape does not answer (an overloaded
        process: the count is then not held)."""
        if m is None:
            return 0.0, 0.0
        try:
            sent = metric(m, "kubescaler_stream_sent_events_total")
            return sent, metric(m, "kubescaler_stream_dropped_events_total")
        except httpx.HTTPError as exc:
            print(f"bench stream: {target.name}: /metrics did not answer: {exc!r}", flush=True)
            return math.nan, math.nan

    # the scrapes run in a thread: the clients keep reading meanwhile (a blocked loop would
    # leave a backlog in the socket buffers that the window then counts)
    ev0, dr0 = await asyncio.to_thread(counters)
    b0, (u0, s0), t0 = counter[0], tree_cpu_split(target.pid), time.perf_counter()
    own0 = sum(os.times()[:2])
    await asyncio.sleep(window)
    b1, (u1, s1), t1 = counter[0], tree_cpu_split(target.pid), time.perf_counter()
    own1 = sum(os.times()[:2])
    ev1, dr1 = await asyncio.to_thread(counters)
    stop.set()
    statuses = await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(1.0)  # let the server notice the disconnects
    events, dropped = ev1 - ev0, dr1 - dr0
    got = b1 - b0
    c0, c1 = u0 + s0, u1 + s1
    refused = Counter(str(s) for s in statuses if s != 200)
    if refused:
        print(f"bench stream: {target.name}: not 200: {dict(refused)}", flush=True)
    return {
        "clients": len(paths),
        "ok": sum(1 for s in statuses if s == 200),
        "events_per_client_s": events / (t1 - t0) / len(paths),
        "mb_s": got / (t1 - t0) / MB,
        "cpu_s_per_gb": (c1 - c0) / (got / 1e9) if got else float("nan"),
        "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
        "sys_share": (s1 - s0) / (c1 - c0) if c1 > c0 else 0.0,
        "client_cpu_pct": 100 * (own1 - own0) / (t1 - t0),
        "drop_pct": 100 * dropped / (events + dropped) if events + dropped != 0 else 0.0,
    }


def make_pairs(stack: Backend, need: int) -> list[tuple[str, str]]:
    with httpx.Client(base_url=stack.main.url, timeout=300) as main:
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


class Servers:
    """The floor app and the stream process on one server stack, started on first use."""

    def __init__(self, stack: Backend, name: str, server: str, env: Mapping[str, str]) -> None:
        self.backend, self.name, self.server, self.env = stack, name, server, dict(env)
        self.floor: Target | None = None
        self.stream: Target | None = None

    def _argv(self, target: str, port: int) -> list[str]:
        if self.server == "granian":
            return granian_argv(target, self.env["KUBESCALER_SERVER_LOOP"], port)
        assert target == "floor_app:app_from_env"
        return [sys.executable, "floor_app.py", "--port", str(port)]

    def floor_target(self) -> Target:
        if self.floor is None:
            port = free_port()
            proc = self.backend.add_http(
                f"floor-{self.server}-{port}",
                self._argv("floor_app:app_from_env", port),
                port,
                self.env,
            )
            assert proc.pid is not None
            self.floor = Target("floor", port, proc.pid, None)
        return self.floor

    def stream_target(self) -> Target:
        if self.stream is None:
            port = free_port()
            env = {**self.env, "KUBESCALER_STREAM_PORT": str(port)}
            if self.server == "uvicorn":
                svc = self.backend.add_stream(env)
                assert svc.pid is not None
                self.stream = Target("stream", svc.port, svc.pid, svc.url)
            else:
                argv = self._argv("floor_app:stream_app_from_env", port)
                proc = self.backend.add_http(f"stream-{self.server}-{port}", argv, port, env)
                assert proc.pid is not None
                self.stream = Target("stream", port, proc.pid, proc.url)
        return self.stream


Measure = Callable[[Target, int], dict[str, float]]


def side_by_side(servers: Servers, n: int, take: Measure) -> tuple[dict[str, float], ...]:
    """The floor, then the stream process, at ``n`` clients; each line printed as it comes."""
    out = []
    for target in (servers.floor_target(), servers.stream_target()):
        began = time.perf_counter()
        res = take(target, n)
        out.append(res)
        print(
            f"bench stream [{servers.name}] {target.name:>6}: {n:>3} clients "
            f"{res['mb_s']:7.1f} MB/s  {res['cpu_s_per_gb']:.2f} CPU-s/GB  "
            f"{res['cpu_pct']:5.0f}% CPU ({100 * res['sys_share']:.0f}% in the kernel; "
            f"clients {res['client_cpu_pct']:.0f}%)  "
            f"drops {res['drop_pct']:.2f}%  ok {res['ok']:.0f}  "
            f"events/s/client {res['events_per_client_s']:.1f}  "
            f"({time.perf_counter() - began:.0f} s)",
            flush=True,
        )
    return tuple(out)


def ratio_row(stack_name: str, n: int, floor: dict[str, float], got: dict[str, float]) -> Row:
    ratio = got["cpu_s_per_gb"] / floor["cpu_s_per_gb"]
    return (
        f"stream vs floor [{stack_name}], {n} clients: CPU-s/GB stream / floor = ratio",
        f"{got['cpu_s_per_gb']:.2f} / {floor['cpu_s_per_gb']:.2f} = {ratio:.2f}x "
        f"({got['mb_s']:.0f} / {floor['mb_s']:.0f} MB/s; {got['cpu_pct']:.0f}% / "
        f"{floor['cpu_pct']:.0f}% of a core; drops {got['drop_pct']:.2f}%)",
    )


def run(
    stack: Backend,
    counts: list[int],
    window: float,
    compare: tuple[int, ...] = (40, 160),
    stacks: bool = True,
) -> list[Row]:
    others = STACKS[1:] if stacks else []
    pairs = make_pairs(stack, sum(counts) + len(others) * sum(compare))

    def take(target: Target, n: int) -> dict[str, float]:
        nonlocal pairs
        if target.metrics is None:
            paths = [f"/floor/{i}" for i in range(n)]
        else:
            paths = [f"/stream/{u}/{p}?session=bench-{uuid.uuid4().hex[:12]}" for u, p in pairs[:n]]
            pairs = pairs[n:]  # fresh pairs: the last round's locks stay until their TTL
        return run_client(round_(target, paths, window))

    name, server, env = STACKS[0]
    prod = Servers(stack, name, server, env)
    results: list[tuple[dict[str, float], dict[str, float]]] = []
    for n in counts:
        floor, got = side_by_side(prod, n, take)
        results.append((floor, got))
        if not held(got):
            break
    rows: list[Row] = []
    for floor, got in results:
        n = int(got["clients"])
        if n in compare:
            rows.append(ratio_row(name, n, floor, got))
    for other_name, other_server, other_env in others:
        servers = Servers(stack, other_name, other_server, other_env)
        for n in compare:
            floor, got = side_by_side(servers, n, take)
            rows.append(ratio_row(other_name, n, floor, got))
    for _, got in results:
        n = int(got["clients"])
        rows.append(
            (
                f"stream, {n} full-speed clients: MB/s total (per client) | CPU-s/GB | drops",
                f"{got['mb_s']:.1f} ({got['mb_s'] / n:.2f}) | {got['cpu_s_per_gb']:.2f} "
                f"({got['cpu_pct']:.0f}% of a core; clients {got['client_cpu_pct']:.0f}%) | "
                f"{got['drop_pct']:.2f}%",
            )
        )
    best = max((got for _, got in results if held(got)), key=lambda r: r["clients"], default=None)
    tried = int(results[-1][1]["clients"])
    value = "none"
    if best is not None:
        value = (
            f"{best['clients']:.0f}"
            + (" (the largest N tried)" if best["clients"] == tried else "")
            + f": {best['mb_s']:.0f} MB/s, the stream process {best['cpu_pct']:.0f}% of a core, "
            f"the clients {best['client_cpu_pct']:.0f}%"
        )
    rows.append(
        (
            f"stream: most clients held at the default rate (each at its full rate, drops < "
            f"{HELD:.0f}%)",
            value,
        )
    )
    return rows


def held(got: dict[str, float]) -> bool:
    """Every client answered, fewer than HELD % of events dropped, and every client read at
    the full rate (a producer that falls behind drops nothing but sends less). A NaN (a
    /metrics scrape that did not answer) is not held."""
    full = got["mb_s"] / got["clients"] >= RATE * (1 - HELD / 100)
    return bool(got["drop_pct"] < HELD and got["ok"] == got["clients"] and full)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--clients",
        default=",".join(map(str, COUNTS)),
        help="comma-separated client counts (a run stops at the first with drops >= 1%%)",
    )
    p.add_argument("--window", type=float, default=8.0, help="measured seconds per count")
    p.add_argument("--compare", default="40,160", help="counts the other server stacks run")
    p.add_argument("--stacks", action="store_true", help="also run the other server stacks")
    opts = p.parse_args()
    counts = [int(c) for c in opts.clients.split(",")]
    compare = tuple(int(c) for c in opts.compare.split(","))
    with backend() as stack:
        rows = run(stack, counts, opts.window, compare, opts.stacks)
    print()
    print_table(rows)
    print(
        f"\nRATE {RATE:.2f} MB/s of payload per client (+ SSE/JSON framing); one stream process;"
        " the clients run in this process on the same cores."
    )


if __name__ == "__main__":
    main()
