"""main and base: test data creation, and read latency under a small steady open-loop load.

Starts its own Redis, Cassandra, base and main (plus a lock-keeper and a stream process, unused
here) on free ports. Times `POST /testdata` for 10,000 users and 1,000 profiles, then sends
`GET /login/{user}` to main and `GET /users/{id}/profiles` to base at a fixed rate: requests
start on a schedule whatever the earlier ones do (open loop), and each latency runs from its
scheduled start, so a stall shows up in the tail instead of slowing the sender.

    uv run python bench/bench_main.py [--rate 50] [--duration 20] [--stacks]

With --stacks the reads are timed on each server stack in turn: the backend's base and main
(uvicorn on uvloop + httptools), then a base and a main of their own on uvicorn with asyncio +
h11 (the stack before), then on granian; the same data behind all.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx
from _shared import STACKS, Backend, Row, backend, content_length, pct, print_table, run_client
from floor_app import granian_argv

from kubescaler_dev.proc import free_port

#: A request not answered in this long counts as an error (its latency is still recorded).
TIMEOUT_S = 10.0
#: A connection idle this long is not used again: uvicorn closes one idle for 5 s, and a
#: request sent on it would fail as if the server had.
IDLE_S = 4.0


def create(stack: Backend, users: int, profiles: int) -> tuple[float, dict[str, object]]:
    with httpx.Client(base_url=stack.main.url, timeout=300) as main:
        main.delete("/testdata").raise_for_status()
        start = time.perf_counter()
        r = main.post("/testdata", params={"users": users, "profiles": profiles})
        took = time.perf_counter() - start
        r.raise_for_status()
        return took, r.json()


def user_ids(stack: Backend) -> list[str]:
    ids: list[str] = []
    with httpx.Client(base_url=stack.main.url, timeout=60) as main:
        page = None
        while True:
            r = main.get("/users", params={"limit": 5000, **({"page": page} if page else {})})
            ids += [u["id"] for u in r.json()]
            page = r.headers.get("X-Next-Page")
            if not page:
                return ids


class Pool:
    """Keep-alive HTTP/1.1 GETs over raw sockets, at most ``most`` connections.

    Not httpx: its connection pool's bookkeeping walks every connection and request on each
    one (httpcore 1.0), so a client with ~100 requests in flight spent most of its CPU there,
    sent late and read late, and the latencies it measured were its own (main's ``/login``
    seemed to top out near 60/s; with this client main answers ~110/s)."""

    def __init__(self, url: str, most: int = 200) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.free = asyncio.Semaphore(most)

    async def get(self, path: str) -> int:
        """GET ``path``: its status, the body read and dropped."""
        async with self.free:
            reader, writer = await self._connection()
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = content_length(head)
                if length is None:
                    raise ValueError(f"no content-length: {head[:200]!r}")
                await reader.readexactly(length)
            except BaseException:
                writer.close()
                raise
            self.idle.append((reader, writer, time.monotonic()))
            return int(head.split(b" ", 2)[1])

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The connection used last, unless the server may have closed it: a new one then."""
        while self.idle:
            reader, writer, since = self.idle.pop()
            if time.monotonic() - since < IDLE_S and not reader.at_eof():
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()


async def open_loop(
    url: str, paths: list[str], rate: float, duration: float
) -> tuple[list[float], Counter[str], float]:
    """Latencies (s) of requests started every 1/rate s for ``duration`` s (an error's too:
    the time until it failed); errors by kind (a status that is not 200, "no answer" in
    TIMEOUT_S, "connection" for a failed or dropped one); 200s a second."""
    pool = Pool(url)
    try:
        for path in paths[:20]:  # warm the pool and the services
            await pool.get(path)
        latencies: list[float] = []
        errors: Counter[str] = Counter()

        async def one(path: str, scheduled: float) -> None:
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    status = str(await pool.get(path))
            except TimeoutError:
                status = "no answer"
            except (OSError, ValueError, asyncio.IncompleteReadError):
                status = "connection"
            latencies.append(time.perf_counter() - scheduled)
            if status != "200":
                errors[status] += 1

        total = int(rate * duration)
        tasks = []
        start = time.perf_counter()
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(random.choice(paths), scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    finally:
        pool.close()
    return latencies, errors, (len(latencies) - errors.total()) / elapsed


def kinds(errors: Counter[str]) -> str:
    """ "0", or each kind of error and its count: "503: 12, no answer: 3"."""
    return ", ".join(f"{k}: {n}" for k, n in sorted(errors.items())) or "0"


def base_and_main(stack: Backend, server: str, env: dict[str, str]) -> tuple[str, str]:
    """A base and a main of their own on ``server`` with ``env``: their URLs."""
    if server == "uvicorn":
        base = stack.add_service("base", env)
        main = stack.add_service("main", {**env, "KUBESCALER_BASE_URL": base.url})
        return base.url, main.url
    loop, urls = env["KUBESCALER_SERVER_LOOP"], []
    extra: dict[str, str] = {}
    for name in ("base", "main"):
        port = free_port()
        argv = granian_argv(f"floor_app:{name}_app_from_env", loop, port)
        served = stack.add_http(f"{name}-{server}-{port}", argv, port, {**env, **extra})
        urls.append(served.url)
        extra = {"KUBESCALER_BASE_URL": served.url}
    return urls[0], urls[1]


def run(
    stack: Backend, rate: float, duration: float, users: int = 10_000, stacks: bool = False
) -> list[Row]:
    profiles = users // 10
    took, body = create(stack, users, profiles)
    rows: list[Row] = [
        (
            f"main: test data, {users:,} users + {profiles:,} profiles (target < 10 s)",
            f"{took:.2f} s wall ({body['seconds']} s in main; {body['suggested']} suggested)",
        )
    ]
    ids = user_ids(stack)
    servers = [(STACKS[0][0], stack.base.url, stack.main.url)]
    for name, server, env in STACKS[1:] if stacks else []:
        servers.append((name, *base_and_main(stack, server, env)))
    targets = []
    for name, base_url, main_url in servers:
        on = f" [{name}]" if stacks else ""
        targets += [
            (f"main GET /login/{{user}}{on}", main_url, [f"/login/{u}" for u in ids]),
            (
                f"base GET /users/{{id}}/profiles{on}",
                base_url,
                [f"/users/{u}/profiles" for u in ids],
            ),
        ]
    # unmeasured: Cassandra's caches and JIT warm up on the first target, not on the first stack
    run_client(open_loop(targets[0][1], targets[0][2], rate, min(5.0, duration)))
    for label, url, paths in targets:
        lat, errors, achieved = run_client(open_loop(url, paths, rate, duration))
        print(f"bench main: {label}: p50 {pct(lat, 0.5):.1f} ms p99 {pct(lat, 0.99):.1f} ms")
        rows.append(
            (
                f"{label} at {rate:.0f}/s for {duration:.0f} s: p50 / p99 ms (achieved/s, errors)",
                f"{pct(lat, 0.5):.1f} / {pct(lat, 0.99):.1f} ({achieved:.1f}/s, {kinds(errors)})",
            )
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=float, default=50, help="requests per second (default 50)")
    p.add_argument("--duration", type=float, default=20, help="seconds per target (default 20)")
    p.add_argument("--users", type=int, default=10_000, help="test data users (profiles: 1/10)")
    p.add_argument(
        "--stacks",
        action="store_true",
        help="also on the other server stacks (asyncio + h11, granian)",
    )
    opts = p.parse_args()
    with backend() as stack:
        rows = run(stack, opts.rate, opts.duration, opts.users, opts.stacks)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
