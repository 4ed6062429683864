"""The coalescer (adapters/coalesce): calls made together leave together, each answered alone."""

from __future__ import annotations

import asyncio

import pytest

from kubescaler.adapters.coalesce import Coalescer


class Dependency:
    """A fake dependency that records its batches and answers each item with its double."""

    def __init__(self, delay: float = 0.01) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.sent = asyncio.Event()

    async def send(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        self.sent.set()
        await asyncio.sleep(self.delay)
        return [ValueError(f"no {i}") if i < 0 else 2 * i for i in items]


async def test_a_lone_call_leaves_at_once() -> None:
    dep = Dependency(delay=0)
    ask = Coalescer(dep.send, in_flight=1)
    assert await ask(3) == 6
    assert dep.batches == [[3]]


async def test_calls_arriving_while_one_is_out_leave_together_in_order() -> None:
    dep = Dependency()
    ask = Coalescer(dep.send, in_flight=1)
    first = asyncio.create_task(ask(0))
    await asyncio.sleep(0)  # the first batch is out
    rest = await asyncio.gather(*(ask(i) for i in range(1, 50)))
    assert await first == 0
    assert rest == [2 * i for i in range(1, 50)]
    assert dep.batches == [[0], list(range(1, 50))]


async def test_most_caps_a_batch() -> None:
    dep = Dependency()
    ask = Coalescer(dep.send, in_flight=2, most=10)
    await asyncio.gather(*(ask(i) for i in range(25)))
    assert sorted(len(b) for b in dep.batches) == [5, 10, 10]
    assert sorted(i for b in dep.batches for i in b) == list(range(25))


async def test_an_item_error_reaches_its_caller_only() -> None:
    ask = Coalescer(Dependency().send, in_flight=1)
    got = await asyncio.gather(ask(1), ask(-1), ask(2), return_exceptions=True)
    assert [got[0], got[2]] == [2, 4]
    assert isinstance(got[1], ValueError)
    assert str(got[1]) == "no -1"


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_goes_out() -> None:
    calls = 0

    async def flaky(items: list[int]) -> list[int | BaseException]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise ConnectionError("down")
        return list(items)

    ask = Coalescer(flaky, in_flight=1)
    first = await asyncio.gather(ask(1), ask(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in first)
    assert await ask(3) == 3


async def test_a_caller_that_gave_up_before_its_batch_left_is_not_sent() -> None:
    dep = Dependency(delay=0.05)
    ask = Coalescer(dep.send, in_flight=1)
    busy = asyncio.create_task(ask(1))
    await dep.sent.wait()  # the first batch is out
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await ask(2)  # queued behind the first batch, abandoned
    assert await ask(3) == 6
    await busy
    assert dep.batches == [[1], [3]]


async def test_aclose_cancels_the_waiting_callers() -> None:
    ask = Coalescer(Dependency(delay=10).send, in_flight=1)
    waiting = [asyncio.create_task(ask(i)) for i in range(3)]
    await asyncio.sleep(0)
    await ask.aclose()
    got = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in got)


async def test_a_batch_answered_with_the_wrong_count_fails_each_caller_and_goes_on() -> None:
    """A send that loses or invents results is an error for every caller of the batch, not a
    wrong answer for some and a hang for others; the next batch is served."""
    short = True

    async def lossy(items: list[int]) -> list[int | BaseException]:
        return list(items[:-1]) if short else list(items)

    ask = Coalescer(lossy, in_flight=1)
    got = await asyncio.gather(ask(1), ask(2), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in got)
    short = False
    assert await ask(3) == 3
