"""Handing a stream's events to the server (``entrypoints/sse_stream.py``): at once in the
producer's tick while the client keeps up, through the stream's own task when its connection
waits, the start and end through the app's send; with a fake ASGI send, no server."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from streamfakes import USER, Hub, hub_with, sample

from kubescaler.domain.sse import DataEvent, Event, LockLost, SseParser, decode
from kubescaler.entrypoints.sse_stream import SERVER_SEND, Pump, pump, with_server_send
from kubescaler.services.stream_session import StreamSession


@dataclass
class FakeServer:
    """An ASGI send that records bodies; while ``paused`` is set, a send waits for it."""

    bodies: list[bytes] = field(default_factory=list)
    paused: asyncio.Event | None = None
    fail: Exception | None = None

    async def send(self, message: Any) -> None:
        if self.paused is not None:
            await self.paused.wait()
        if self.fail is not None:
            raise self.fail
        self.bodies.append(bytes(message["body"]))

    def events(self) -> list[Event]:
        """What a client reads of the bodies sent, as typed events."""
        return [decode(m) for m in SseParser().feed(b"".join(self.bodies))]

    def names(self) -> list[str]:
        return [e.event for e in self.events()]

    def data(self) -> list[DataEvent]:
        return [e for e in self.events() if isinstance(e, DataEvent)]


async def pumped(h: Hub, server: FakeServer) -> tuple[StreamSession, asyncio.Task[None]]:
    session = await h.hub.open(USER, uuid.uuid4(), "s1")
    session.start()
    task = asyncio.create_task(Pump(session, 500, server.send).run())
    await asyncio.sleep(0)  # the pump is idle, waiting for events
    return session, task


async def test_a_client_that_keeps_up_gets_each_event_within_the_producers_tick() -> None:
    """While the pump idles, produce() hands the event to the server itself: sent before any
    other task runs, counted as sent, the pump still idle."""
    h = hub_with()
    server = FakeServer()
    session, task = await pumped(h, server)
    sent = sample("kubescaler_stream_sent_events_total")
    for ts in (10, 20, 30):
        session.produce(ts_ms=ts)
        assert len(server.bodies) == ts // 10  # no await in between: sent in produce()
    assert session.idle
    assert [(e.seq, e.ts_ms, e.dropped) for e in server.data()] == [
        (1, 10, 0),
        (2, 20, 0),
        (3, 30, 0),
    ]
    assert sample("kubescaler_stream_sent_events_total") == sent + 3
    session.finish(LockLost(reason="x"))
    await task
    assert server.events()[-1] == LockLost(v=1, reason="x")


async def test_a_paused_connection_queues_then_drops_and_the_pump_catches_up_in_order() -> None:
    """The connection pauses: the send in flight waits, the queue (2) fills, the rest are
    dropped; when it resumes, the pump sends the waiting event, then the queued ones in
    order, and the next event says how many were dropped."""
    h = hub_with()
    server = FakeServer(paused=asyncio.Event())
    session, task = await pumped(h, server)
    for ts in range(1, 7):  # 1 in flight, 2 queued, 3 dropped
        session.produce(ts_ms=ts)
        await asyncio.sleep(0.001)  # the pump waits on the send in flight meanwhile
    assert server.bodies == []
    assert len(session.queue) == 2
    assert not task.done()
    server.paused.set()  # type: ignore[union-attr]
    await asyncio.sleep(0.01)
    server.paused = None
    session.produce(ts_ms=7)
    assert [(e.seq, e.dropped) for e in server.data()] == [
        (1, 0),
        (2, 0),
        (3, 0),
        (7, 3),
    ]
    assert session.idle  # caught up: events go out at once again
    session.finish(LockLost(reason="x"))
    await task


async def test_an_end_waits_for_the_send_in_flight_and_comes_last() -> None:
    """superseded while a send waits on a slow client: that event goes out, queued data is
    discarded, superseded is the last thing sent, and the pump returns."""
    h = hub_with()
    server = FakeServer(paused=asyncio.Event())
    session, task = await pumped(h, server)
    session.produce(ts_ms=1)
    session.produce(ts_ms=2)
    await asyncio.sleep(0.001)  # the pump waits on the send in flight
    session.supersede(5)
    server.paused.set()  # type: ignore[union-attr]
    await asyncio.wait_for(task, 1)
    assert server.names() == ["data", "superseded"]


async def test_a_send_that_fails_in_the_producers_tick_fails_the_stream_not_the_producer() -> None:
    """The server's send raises during produce(): produce() returns, the stream's own task
    raises the error (the server logs it and closes the connection)."""
    h = hub_with()
    server = FakeServer(fail=RuntimeError("connection broken"))
    session, task = await pumped(h, server)
    session.produce(ts_ms=1)
    with pytest.raises(RuntimeError, match="connection broken"):
        await asyncio.wait_for(task, 1)


async def test_a_client_that_goes_away_ends_its_stream_and_is_forgotten() -> None:
    """pump(): the server's receive says http.disconnect, so the stream ends without a last
    event, leaves the hub (no more refreshes or events) and its connection is uncounted."""
    h = hub_with()
    session = await h.hub.open(USER, uuid.uuid4(), "s1")
    server = FakeServer()
    gone = asyncio.Event()
    live = sample("kubescaler_stream_connections")

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    task = asyncio.create_task(pump(session, 500, server.send, receive))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert h.hub.sessions == {session}
    assert sample("kubescaler_stream_connections") == live + 1
    session.produce(ts_ms=1)
    await asyncio.sleep(0.01)
    gone.set()
    await asyncio.wait_for(task, 1)
    assert server.names() == ["hello", "data"]
    assert h.hub.sessions == set()
    assert sample("kubescaler_stream_connections") == live


async def test_events_skip_the_apps_send_wrappers_but_the_start_and_end_do_not() -> None:
    """with_server_send: the server's own send rides in the HTTP scope; pump() sends hello and
    the end through the app's send (its middleware sees them) and the events in between
    straight to the server's."""
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope.get(SERVER_SEND))

    server = FakeServer()
    await with_server_send(app)({"type": "http"}, None, server.send)  # type: ignore[arg-type]
    await with_server_send(app)({"type": "lifespan"}, None, server.send)  # type: ignore[arg-type]
    assert seen == [server.send, None]

    h = hub_with()
    session = await h.hub.open(USER, uuid.uuid4(), "s1")
    through_app, direct = FakeServer(), FakeServer()

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    task = asyncio.create_task(
        pump(session, 500, through_app.send, receive, direct.send)  # type: ignore[arg-type]
    )
    await asyncio.sleep(0)
    session.produce(ts_ms=1)
    session.finish(LockLost(reason="x"))
    await asyncio.wait_for(task, 1)
    assert through_app.names() == ["hello"]
    assert through_app.bodies[-1] == b""  # the end
    assert direct.names() == ["data", "lock-lost"]


async def test_data_stops_at_the_locks_deadline_less_the_clock_margin() -> None:
    """Every data event is checked against the hold's end (the keeper's expiry less the
    clock margin): the last one before it goes out, the first at it ends the stream with
    lock-lost and nothing more."""
    h = hub_with()
    server = FakeServer()
    session, task = await pumped(h, server)
    assert session.deadline_ms == session.expires_at_ms - 250
    session.produce(ts_ms=session.deadline_ms - 1)
    session.produce(ts_ms=session.deadline_ms)
    await asyncio.wait_for(task, 1)
    assert server.names() == ["data", "lock-lost"]
    [lost] = [e for e in server.events() if isinstance(e, LockLost)]
    assert "deadline" in lost.reason


async def test_data_queued_before_the_deadline_is_not_sent_after_it() -> None:
    """A process paused past its lock's deadline (a frozen node) wakes with data queued
    before it: the send in flight completes, the queued data is never sent, lock-lost is."""
    h = hub_with()
    server = FakeServer(paused=asyncio.Event())
    session, task = await pumped(h, server)
    now = h.clock()
    session.produce(ts_ms=now)  # in flight: the connection waits
    session.produce(ts_ms=now + 1)  # queued
    await asyncio.sleep(0.001)
    h.clock.now = session.deadline_ms  # paused past the deadline, then resumed
    server.paused.set()  # type: ignore[union-attr]
    await asyncio.wait_for(task, 1)
    assert server.names() == ["data", "lock-lost"]
    assert [e.ts_ms for e in server.data()] == [now]
