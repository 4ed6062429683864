"""A burst of simultaneous stream opens through the entry point: time to `hello`.

On a backend (Redis, Cassandra, base, main, a lock-keeper, one stream process) with an nginx
entry point in front, N clients on N distinct bound pairs connect at the same moment (raw
asyncio sockets, one process) and each is timed from its connect to the `hello` event: the
binding check with base, the lock acquire through the event path, the stream's start, and
both proxy hops. The streams are closed once every client has its hello. A second burst goes
straight to the stream process, so the entry point's share shows.

    uv run python bench/bench_burst.py [--clients 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid

from _shared import Backend, Row, backend, pct, print_table, refusal, run_client


async def first_hello(port: int, path: str) -> tuple[str, float, asyncio.StreamWriter | None]:
    """Connect, ask for the stream, read until its hello: (status, seconds, open writer)."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if head.split(b" ", 2)[1] != b"200":
        status = await refusal(head, reader)
        writer.close()
        return status, time.perf_counter() - start, None
    seen = b""
    while b"event: hello" not in seen:
        chunk = await reader.read(65536)
        if not chunk:
            break
        seen = seen[-64:] + chunk
    return "200", time.perf_counter() - start, writer


async def burst(port: int, pairs: list[tuple[str, str]]) -> tuple[list[float], dict[str, int]]:
    """Every pair opened at once; the hello times of the 200s and a count of each status."""
    sessions = [f"burst-{uuid.uuid4().hex[:12]}" for _ in pairs]
    got = await asyncio.gather(
        *(
            first_hello(port, f"/stream/{u}/{p}?session={s}")
            for (u, p), s in zip(pairs, sessions, strict=True)
        ),
        return_exceptions=True,
    )
    times: list[float] = []
    statuses: dict[str, int] = {}
    for result in got:
        if isinstance(result, BaseException):
            statuses["no answer"] = statuses.get("no answer", 0) + 1
            continue
        status, took, writer = result
        statuses[status] = statuses.get(status, 0) + 1
        if status == "200":
            times.append(took)
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return times, statuses


def run(stack: Backend, clients: int = 200) -> list[Row]:
    """A burst through the entry point, then one straight to the stream process (fresh pairs
    each): the difference is the entry point's share."""
    gateway = stack.gateway([stack.stream])
    rows = []
    for where, port in (
        ("through the entry point", gateway.port),
        ("straight to the stream process", stack.stream.port),
    ):
        pairs = stack.new_pairs(clients // 2 + 1)[:clients]
        time.sleep(2)  # the test data's writes settle
        times, statuses = run_client(burst(port, pairs))
        print(f"bench burst: {clients} opens {where}, statuses {statuses}", flush=True)
        rows.append(
            (
                f"burst: {clients} simultaneous opens {where}, time to hello: "
                "p50 / p99 ms (statuses)",
                f"{pct(times, 0.5):.0f} / {pct(times, 0.99):.0f} "
                f"({', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))})",
            )
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=200, help="simultaneous opens (default 200)")
    opts = p.parse_args()
    with backend() as stack:
        rows = run(stack, opts.clients)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
