"""What the stream tests share: a bound pair's URLs and an SSE client over httpx."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import msgspec

from kubescaler.domain.sse import SseMessage, SseParser


@dataclass
class Pair:
    user: str
    profile: str
    other_profile: str  # a profile the user is NOT bound to
    stranger: str = field(default_factory=lambda: str(uuid.uuid4()))

    def path(self, session: str | None = None, profile: str | None = None) -> str:
        q = f"?session={session}" if session else ""
        return f"/stream/{self.user}/{profile or self.profile}{q}"


CLOSED = "(closed by the server)"  # the event open_stream queues when the stream ends


@contextlib.asynccontextmanager
async def open_stream(url: str) -> AsyncIterator[tuple[httpx.Response, asyncio.Queue[SseMessage]]]:
    """An SSE client: the response, and a queue of parsed events fed in the background."""
    client = httpx.AsyncClient(timeout=httpx.Timeout(10, read=30))
    queue: asyncio.Queue[SseMessage] = asyncio.Queue()
    async with client.stream("GET", url) as response:

        async def pump() -> None:
            parser = SseParser()
            async for chunk in response.aiter_raw():
                for msg in parser.feed(chunk):
                    queue.put_nowait(msg)
            queue.put_nowait(SseMessage(event=CLOSED, data=""))

        task = asyncio.create_task(pump()) if response.status_code == 200 else None
        try:
            yield response, queue
        finally:
            if task:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
    await client.aclose()


async def next_event(
    queue: asyncio.Queue[SseMessage], kind: str, timeout: float = 10
) -> SseMessage:
    async with asyncio.timeout(timeout):
        while (msg := await queue.get()).event != kind:
            pass
    return msg


async def aget(url: str, timeout: float = 10) -> httpx.Response:
    async with httpx.AsyncClient(timeout=timeout) as http:
        return await http.get(url)


def data(msg: SseMessage) -> dict[str, object]:
    return msgspec.json.decode(msg.data)  # type: ignore[no-any-return]
