"""What kubescaler's locust scenarios share: the pairs to stream, an SSE watcher, stream stats.

Imported by the locustfiles (locust puts their folder on ``sys.path``), never by the pytest
process: locust monkeypatches the standard library with gevent on import.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from gevent.lock import Semaphore
from locust import HttpUser, events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from kubescaler.domain.sse import SseParser

MB = 1_000_000


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("kubescaler")
    group.add_argument(
        "--hold-s", type=float, default=20.0, help="seconds a viewer keeps a stream open"
    )
    group.add_argument(
        "--slow-kbps",
        type=float,
        default=256.0,
        help="read rate of SlowViewer in KB/s (below the stream's rate: the server drops)",
    )
    group.add_argument(
        "--hot-pairs", type=int, default=3, help="pairs the LockContender users race for"
    )
    group.add_argument("--peak-users", type=int, default=12, help="EveningPeak: users at the peak")


# -- the pairs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    user: str
    profile: str

    @property
    def session(self) -> str:
        """A session id stable per pair, so a viewer that comes back takes its own lock back."""
        return (
            "lt-"
            + hashlib.blake2b(f"{self.user}:{self.profile}".encode(), digest_size=8).hexdigest()
        )

    def path(self, session: str) -> str:
        return f"/stream/{self.user}/{self.profile}?session={session}"


class PairPool:
    """The bound pairs of /main/suggested: a few hot ones to race for, the rest lent to viewers.

    One pool per locust process, loaded by its first user. With ``--processes``/workers, each
    worker takes every n-th pair (by worker index) so viewers of different workers never collide.
    """

    def __init__(self) -> None:
        self._lock = Semaphore()
        self.loaded = False
        self.hot: list[Pair] = []
        self.free: deque[Pair] = deque()
        self.users: list[str] = []

    def load(self, user: HttpUser) -> None:
        with self._lock:
            if self.loaded:
                return
            opts = user.environment.parsed_options
            hot = opts.hot_pairs if opts else 3
            with user.client.get(
                "/main/suggested", name="/main/suggested", catch_response=True
            ) as r:
                suggested = r.json() if r.status_code == 200 else []
            pairs = [Pair(s["id"], p) for s in suggested for p in s["profiles"]]
            if not pairs:
                raise RuntimeError(
                    "no bound pairs in /main/suggested: create test data first "
                    "(POST /main/testdata?users=..&shared_users=..)"
                )
            self.hot = pairs[:hot]
            rest = pairs[hot:]
            runner = user.environment.runner
            if isinstance(runner, WorkerRunner) and runner.worker_index >= 0:
                workers = max(1, user.environment.parsed_options.expect_workers or 1)
                rest = rest[runner.worker_index :: workers]
            random.shuffle(rest)
            self.free = deque(rest)
            self.users = [s["id"] for s in suggested]
            self.loaded = True

    def take(self) -> Pair | None:
        return self.free.popleft() if self.free else None

    def give(self, pair: Pair) -> None:
        self.free.append(pair)


POOL = PairPool()


# -- stream statistics beyond locust's own ---------------------------------------------------


@dataclass
class StreamStats:
    """Counters of one locust process; workers send theirs to the master, which adds them up."""

    streams: int = 0
    bytes: int = 0
    data_events: int = 0
    dropped_events: int = 0
    refused_409: int = 0
    refused_other: int = 0
    lock_lost: int = 0
    superseded: int = 0
    reconnects: int = 0
    errors: int = 0
    hello_ms: list[float] = field(default_factory=list)
    first_data_ms: list[float] = field(default_factory=list)
    stream_mb_s: list[float] = field(default_factory=list)
    slow_stream_mb_s: list[float] = field(default_factory=list)

    def merge(self, other: dict[str, Any]) -> None:
        for key, value in other.items():
            setattr(self, key, getattr(self, key) + value)

    def summary(self) -> dict[str, Any]:
        def pct(xs: list[float], q: float) -> float | None:
            s = sorted(xs)
            return round(s[min(len(s) - 1, int(q * len(s)))], 2) if s else None

        def mean(xs: list[float]) -> float | None:
            return round(sum(xs) / len(xs), 3) if xs else None

        produced = self.data_events + self.dropped_events
        return {
            "streams": self.streams,
            "mb_received": round(self.bytes / MB, 1),
            "data_events": self.data_events,
            "dropped_events": self.dropped_events,
            "drop_pct": round(100 * self.dropped_events / produced, 2) if produced else 0.0,
            "refused_409": self.refused_409,
            "refused_other": self.refused_other,
            "lock_lost": self.lock_lost,
            "superseded": self.superseded,
            "reconnects": self.reconnects,
            "errors": self.errors,
            "hello_ms_p50": pct(self.hello_ms, 0.5),
            "hello_ms_p95": pct(self.hello_ms, 0.95),
            "first_data_ms_p50": pct(self.first_data_ms, 0.5),
            "first_data_ms_p95": pct(self.first_data_ms, 0.95),
            "stream_mb_s_mean": mean(self.stream_mb_s),
            "stream_mb_s_min": round(min(self.stream_mb_s), 3) if self.stream_mb_s else None,
            "slow_stream_mb_s_mean": mean(self.slow_stream_mb_s),
        }


STATS = StreamStats()


@events.report_to_master.add_listener
def _to_master(client_id: str, data: dict[str, Any]) -> None:
    global STATS  # noqa: PLW0603 - swapped so each report carries only what is new
    data["kubescaler_streams"] = asdict(STATS)
    STATS = StreamStats()


@events.worker_report.add_listener
def _from_worker(client_id: str, data: dict[str, Any]) -> None:
    STATS.merge(data.get("kubescaler_streams", {}))


@events.init.add_listener
def _web_route(environment: Environment, **_: Any) -> None:
    if environment.web_ui is not None:

        def streams() -> dict[str, Any]:
            return STATS.summary()  # STATS is looked up at each call: workers swap it

        environment.web_ui.app.add_url_rule("/kubescaler/streams", "kubescaler_streams", streams)


@events.quitting.add_listener
def _write(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    summary = STATS.summary()
    prefix = environment.parsed_options.csv_prefix if environment.parsed_options else None
    if prefix:
        Path(f"{prefix}_streams.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not isinstance(environment.runner, MasterRunner) or summary["streams"]:
        print("kubescaler streams: " + json.dumps(summary), flush=True)


# -- watching one stream ---------------------------------------------------------------------

_decode = msgspec.json.Decoder()


@dataclass
class Outcome:
    status: int
    holder_expires_at_ms: int = 0
    ended_by: str = ""  # "", "lock-lost", "superseded", "reconnect", "closed", "error"


def _fire(
    user: HttpUser, name: str, ms: float, length: int = 0, exc: Exception | None = None
) -> None:
    user.environment.events.request.fire(
        request_type="SSE",
        name=name,
        response_time=ms,
        response_length=length,
        exception=exc,
        context={},
    )


def watch(
    user: HttpUser,
    pair: Pair,
    session: str,
    hold_s: float,
    read_bps: float = 0.0,
    label: str = "stream",
) -> Outcome:
    """Open the pair's stream, read it for ``hold_s`` (at ``read_bps``, 0 = as fast as it comes).

    Reports to locust, request type SSE: ``{label}: connect`` (time to the response headers;
    409 is a success, an expected outcome), ``{label}: refused 409``, ``{label}: hello`` and
    ``{label}: first data`` (time to the first event of each kind), ``{label}: stream`` (the
    whole stream: its duration and the bytes read), ``{label}: lock-lost``. A stream ended by
    ``superseded`` (a newer stream of the same pair took over) is a normal end, counted in
    :data:`STATS` with the drops and MB/s.
    """
    start = time.perf_counter()
    with user.client.get(
        pair.path(session),
        name=f"{label}: connect",
        stream=True,
        catch_response=True,
        timeout=(5, 15),
    ) as resp:
        if resp.status_code == 409:
            resp.success()
            STATS.refused_409 += 1
            _fire(user, f"{label}: refused 409", (time.perf_counter() - start) * 1000)
            try:
                expires = int(resp.json().get("holder_expires_at_ms", 0))
            except ValueError:
                expires = 0
            return Outcome(409, expires)
        if resp.status_code != 200:
            STATS.refused_other += 1
            resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
            return Outcome(resp.status_code)
        resp.success()
        STATS.streams += 1
        return _read(user, resp, start, hold_s, read_bps, label)


def _read(
    user: HttpUser, resp: Any, start: float, hold_s: float, read_bps: float, label: str
) -> Outcome:
    parser, got, first_data_at = SseParser(), 0, 0.0
    out = Outcome(200, ended_by="closed")
    deadline = start + hold_s
    try:
        for chunk in resp.iter_content(chunk_size=65536):
            now = time.perf_counter()
            got += len(chunk)
            for msg in parser.feed(chunk):
                if msg.event == "data":
                    first_data_at = _on_data(user, msg.data, now, start, first_data_at, label)
                elif msg.event == "hello":
                    STATS.hello_ms.append((now - start) * 1000)
                    _fire(user, f"{label}: hello", (now - start) * 1000)
                elif msg.event in ("lock-lost", "superseded", "reconnect"):
                    out.ended_by = msg.event
            if out.ended_by != "closed" or now >= deadline:
                break
            if read_bps > 0:  # throttle: never ahead of read_bps since the stream opened
                ahead = got / read_bps - (now - start)
                if ahead > 0:
                    time.sleep(min(ahead, max(0.0, deadline - now)))
    except Exception as exc:  # a read timeout or a reset: the stream failed
        STATS.errors += 1
        STATS.bytes += got
        _fire(user, f"{label}: stream", (time.perf_counter() - start) * 1000, got, exc)
        return Outcome(599, ended_by="error")
    _ended(user, out, start, first_data_at, got, read_bps, label)
    return out


def _on_data(
    user: HttpUser, data: str, now: float, start: float, first_data_at: float, label: str
) -> float:
    """Count one data event and its drops; report the first. The first data event's time."""
    ev = _decode.decode(data)
    STATS.data_events += 1
    STATS.dropped_events += int(ev.get("dropped", 0))
    if first_data_at:
        return first_data_at
    STATS.first_data_ms.append((now - start) * 1000)
    _fire(user, f"{label}: first data", (now - start) * 1000)
    return now


def _ended(
    user: HttpUser,
    out: Outcome,
    start: float,
    first_data_at: float,
    got: int,
    read_bps: float,
    label: str,
) -> None:
    end = time.perf_counter()
    STATS.bytes += got
    if first_data_at and end - first_data_at > 0.5:
        rate = got / (end - first_data_at) / MB
        (STATS.slow_stream_mb_s if read_bps > 0 else STATS.stream_mb_s).append(rate)
    if out.ended_by == "lock-lost":
        STATS.lock_lost += 1
        _fire(user, f"{label}: lock-lost", (end - start) * 1000, got, RuntimeError("lock lost"))
        return
    if out.ended_by == "superseded":  # a newer stream of the pair took over: not a failure
        STATS.superseded += 1
    if out.ended_by == "reconnect":
        STATS.reconnects += 1
    _fire(user, f"{label}: stream", (end - start) * 1000, got)
