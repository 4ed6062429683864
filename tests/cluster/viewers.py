"""SSE viewers for the cluster tests: they behave as the web client's EventSource does."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import httpx
import msgspec
from kubehelp import GATEWAY, Pair, session, tls

from kubescaler.domain.sse import SseParser


@dataclass(frozen=True)
class Grant:
    instance: str
    token: int
    at: float


@dataclass
class Viewer:
    """A stream kept open through the Gateway with one session.

    On ``reconnect`` (a draining pod) or a connection the server dropped, it comes back with
    the same session after the SSE ``retry`` - as a browser's EventSource does - and records
    every grant (``hello``: pod and fencing token). ``superseded`` and ``lock-lost`` end it.
    """

    pair: Pair
    session: str
    grants: list[Grant] = field(default_factory=list)
    controls: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    data_events: int = 0
    payload_bytes: int = 0
    wrong_tokens: int = 0
    ended: str = ""
    _task: asyncio.Task[None] | None = None
    _granted: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def instance(self) -> str:
        return self.grants[-1].instance if self.grants else ""

    @property
    def token(self) -> int:
        return self.grants[-1].token if self.grants else 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def granted(self, timeout: float = 30) -> Grant:
        async with asyncio.timeout(timeout):
            await self._granted.wait()
        return self.grants[-1]

    async def regranted(self, after: int, timeout: float = 90) -> Grant:
        """The first grant after the first ``after`` ones (a reconnect landed)."""
        async with asyncio.timeout(timeout):
            while len(self.grants) <= after:
                self._granted.clear()
                await self._granted.wait()
        return self.grants[after]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def _run(self) -> None:
        retry_s = 0.5
        async with httpx.AsyncClient(
            base_url=GATEWAY, verify=tls(), timeout=httpx.Timeout(10, read=60)
        ) as http:
            while not self.ended:
                try:
                    retry_s = await self._once(http, retry_s)
                except (httpx.HTTPError, OSError):
                    self.controls.append("(connection dropped)")
                if self.ended:
                    return
                await asyncio.sleep(retry_s)

    async def _once(self, http: httpx.AsyncClient, retry_s: float) -> float:
        async with http.stream("GET", self.pair.path(self.session)) as response:
            self.statuses.append(response.status_code)
            if response.status_code != 200:
                await response.aread()
                return 1.0
            parser = SseParser()
            async for chunk in response.aiter_raw():
                for msg in parser.feed(chunk):
                    if msg.retry is not None:
                        retry_s = msg.retry / 1000
                    if msg.event == "data":
                        event = msgspec.json.decode(msg.data)
                        self.data_events += 1
                        self.payload_bytes += len(event["payload"])
                        self.wrong_tokens += event["token"] != self.token
                        continue
                    self.controls.append(msg.event)
                    body = msgspec.json.decode(msg.data)
                    if msg.event == "hello":
                        self.grants.append(Grant(body["instance"], body["token"], time.monotonic()))
                        self._granted.set()
                    elif msg.event in ("superseded", "lock-lost"):
                        self.ended = msg.event
                        return retry_s
                    elif msg.event == "reconnect":
                        return retry_s
        self.controls.append("(closed by the server)")
        return retry_s


async def open_viewers(pairs: list[Pair], label: str, timeout: float = 60) -> list[Viewer]:
    """One granted viewer per pair."""
    viewers = [Viewer(pair, session(label)) for pair in pairs]
    for viewer in viewers:
        viewer.start()
    await asyncio.gather(*(v.granted(timeout) for v in viewers))
    return viewers


async def close_all(viewers: list[Viewer]) -> None:
    await asyncio.gather(*(v.close() for v in viewers))
