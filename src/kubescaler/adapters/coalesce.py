"""Calls made in the same moment travel together: one request to a dependency answers many.

A :class:`Coalescer` queues each call and lets at most ``in_flight`` senders run; a sender
takes everything queued (up to ``most``) and hands it to ``send`` as one batch. A lone call
waits for nothing: a sender starts as soon as the event loop is free. Under load the calls that
arrive while the senders are busy pile up and leave together in the next batch, so a burst of
N callers costs the dependency a handful of requests instead of N, and the process a handful of
client round trips (each one, for redis-py or httpx, is far more CPU than a batch's encoding).

``send`` returns one result per item, in order; a result that is an exception is raised to
that item's caller alone. An exception ``send`` raises goes to every caller of the batch, and
so does a ValueError when it returns too few or too many results. A
caller that stopped waiting (cancelled, timed out) before its batch left is not sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Send = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[T, R]):
    def __init__(self, send: Send[T, R], in_flight: int, most: int | None = None) -> None:
        self._send = send
        self.in_flight = in_flight
        self.most = most
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._senders: set[asyncio.Task[None]] = set()

    async def __call__(self, item: T) -> R:
        waiting: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, waiting))
        if len(self._senders) < self.in_flight:
            task = asyncio.create_task(self._drain(), name="coalesce")
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)
        return await waiting

    async def _drain(self) -> None:
        """Send what is queued, one batch at a time, until nothing is left."""
        while self._queue:
            cut = len(self._queue) if self.most is None else self.most
            batch = [(item, w) for item, w in self._queue[:cut] if not w.done()]
            del self._queue[:cut]
            if batch:
                await self._one(batch)

    async def _one(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
            if len(results) != len(batch):
                raise ValueError(f"{len(results)} answers to a batch of {len(batch)}")
        except Exception as exc:
            for _, waiting in batch:
                if not waiting.done():
                    waiting.set_exception(exc)
            return
        for (_, waiting), result in zip(batch, results, strict=True):
            if waiting.done():
                continue
            if isinstance(result, BaseException):
                waiting.set_exception(result)
            else:
                waiting.set_result(result)

    async def aclose(self) -> None:
        """Stop the senders; callers still waiting get CancelledError."""
        for task in list(self._senders):
            task.cancel()
        for _, waiting in self._queue:
            waiting.cancel()
        self._queue.clear()
        await asyncio.gather(*self._senders, return_exceptions=True)
