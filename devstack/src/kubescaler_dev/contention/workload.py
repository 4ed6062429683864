"""A contended workload against the running system, through its public entry point.

- **Contenders**: several sessions fighting for each of a few pairs. Each opens its pair's
  stream, reads it (no read timeout: a client keeps reading through a frozen node, as a browser
  does), closes it after a few seconds and opens it again; a 409 waits a moment and retries.
  Every stream it was granted is recorded for the judge (judge.py).
- **Probes**, every half second: a login, a page of profiles, and a fresh session opening a
  pair nobody holds. Each answer is recorded with its time: what recovery is measured from.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import msgspec

from kubescaler.domain.sse import SseParser
from kubescaler_dev.contention.judge import Stream

#: a granted stream is read for this long (seconds), then closed and opened again
HOLD_S = (3.0, 8.0)
#: a pair a probe opened is held until its lock lapses (60 s without a refresh): then reused
#: (``lapse_s``: the lock's TTL and a margin)
LAPSE_S = 65.0
#: how often each probe asks (the fresh open: every second, the others twice a second)
PROBE_EVERY_S = {"login": 0.5, "page": 0.5, "open": 1.0}


@dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic()
    probe: str
    ok: bool
    #: the status, or the error's name: "503 redis" is a clear refusal, "502" or
    #: "ReadTimeout" is not
    what: str

    @property
    def clear(self) -> bool:
        """A success, or a 503 naming the dependency that failed."""
        return self.ok or self.what.startswith("503 ")


@dataclass
class Record:
    streams: list[Stream] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)
    #: (stream, seconds from its last data event to its end) for streams that ended
    silences: list[tuple[Stream, float]] = field(default_factory=list)

    def refused(self, what: str) -> None:
        self.refusals[what] = self.refusals.get(what, 0) + 1


def _what(response: httpx.Response) -> str:
    if response.status_code == 503:
        with contextlib.suppress(ValueError):
            return f"503 {response.json().get('dependency', '?')}"
        return "503 (no JSON body)"
    return str(response.status_code)


class Workload:
    def __init__(
        self,
        base_url: str,
        contended: list[tuple[str, str]],
        fresh: list[tuple[str, str]],
        sessions_per_pair: int = 3,
        headers: Callable[[str], dict[str, str]] = lambda _user: {},
        lapse_s: float = LAPSE_S,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.base_url = base_url
        self.contended = contended
        #: unheld pairs for the fresh-open probe, each usable again once a lock it took lapsed
        self.fresh: list[tuple[float, tuple[str, str]]] = [(0.0, pair) for pair in fresh]
        self.sessions_per_pair = sessions_per_pair
        self.headers = headers
        self.lapse_s = lapse_s
        self.record = Record()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        timeout = httpx.Timeout(5.0, read=None)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        self.http = httpx.AsyncClient(
            base_url=base_url, timeout=timeout, limits=limits, verify=verify
        )

    def start(self) -> None:
        for user, profile in self.contended:
            for i in range(self.sessions_per_pair):
                session = f"contend-{i}-{uuid.uuid4().hex[:10]}"
                self._tasks.append(asyncio.create_task(self._contend(user, profile, session)))
        user = self.contended[0][0]
        probes: dict[str, Callable[[], Awaitable[tuple[bool, str]]]] = {
            "login": lambda: self._get(f"/main/login/{user}", user),
            "page": lambda: self._get("/main/profiles?limit=10", user),
            "open": self._fresh_open,
        }
        self._tasks += [asyncio.create_task(self._probe(n, ask)) for n, ask in probes.items()]

    async def stop(self) -> Record:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.http.aclose()
        return self.record

    # ---- contenders ----

    async def _contend(self, user: str, profile: str, session: str) -> None:
        path = f"/stream/{user}/{profile}?session={session}"
        while not self._stop.is_set():
            try:
                await self._hold(path, f"{user}:{profile}", session, self.headers(user))
            except (httpx.HTTPError, OSError) as exc:
                self.record.refused(type(exc).__name__)
            await asyncio.sleep(random.uniform(0.2, 1.0))

    async def _hold(self, path: str, pair: str, session: str, headers: dict[str, str]) -> None:
        stream: Stream | None = None
        last_data = time.monotonic()
        hold = random.uniform(*HOLD_S)
        try:
            async with self.http.stream("GET", path, headers=headers) as r:
                if r.status_code != 200:
                    await r.aread()
                    self.record.refused(_what(r))
                    return
                parser, until = SseParser(), time.monotonic() + hold
                async for chunk in r.aiter_raw():
                    for msg in parser.feed(chunk):
                        body = msgspec.json.decode(msg.data)
                        if msg.event == "hello":
                            stream = Stream(pair, session, int(body["token"]), body["instance"])
                            self.record.streams.append(stream)
                        elif msg.event == "data" and stream is not None:
                            stream.saw(int(body["ts_ms"]))
                            last_data = time.monotonic()
                        elif stream is not None:
                            stream.ended = msg.event
                            return
                    if time.monotonic() > until and stream is not None:
                        stream.ended = "closed by the client"
                        return
                if stream is not None:
                    stream.ended = "closed by the server"
        except (httpx.HTTPError, OSError) as exc:
            if stream is None:
                raise
            stream.ended = type(exc).__name__
        finally:
            if stream is not None and stream.ended != "closed by the client":
                self.record.silences.append((stream, time.monotonic() - last_data))

    # ---- probes ----

    async def _probe(self, name: str, ask: Callable[[], Awaitable[tuple[bool, str]]]) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                ok, what = await ask()
            except (httpx.HTTPError, OSError) as exc:
                ok, what = False, type(exc).__name__
            self.record.answers.append(Answer(started, name, ok, what))
            await asyncio.sleep(max(0.0, PROBE_EVERY_S[name] - (time.monotonic() - started)))

    async def _get(self, path: str, user: str) -> tuple[bool, str]:
        r = await self.http.get(path, headers=self.headers(user), timeout=5.0)
        return r.status_code == 200, _what(r)

    async def _fresh_open(self) -> tuple[bool, str]:
        """A new session opens a pair nobody holds, and gets its ``hello``."""
        now = time.monotonic()
        usable = [i for i, (at, _) in enumerate(self.fresh) if at <= now]
        if not usable:
            return False, "no unheld pair left"
        i = usable[0]
        user, profile = self.fresh[i][1]
        self.fresh[i] = (now + self.lapse_s, (user, profile))
        path = f"/stream/{user}/{profile}?session=fresh-{uuid.uuid4().hex[:12]}"
        try:
            async with self.http.stream(
                "GET", path, headers=self.headers(user), timeout=httpx.Timeout(5.0)
            ) as r:
                if r.status_code != 200:
                    await r.aread()
                    if r.status_code == 409:  # held after all: never offered again
                        self.fresh[i] = (math.inf, (user, profile))
                    return False, _what(r)
                parser = SseParser()
                async for chunk in r.aiter_raw():
                    if any(msg.event == "hello" for msg in parser.feed(chunk)):
                        return True, "200"
        except httpx.HTTPError:
            # no answer: the open may still be granted later (a frozen pod that wakes up goes
            # on with it), so the pair is held for an unknown time and never offered again
            self.fresh[i] = (math.inf, (user, profile))
            raise
        return False, "closed before hello"
