"""Stream sessions and their hub on a fake clock with fake base and lock ports: drops, refresh
verdicts, supersession, drain, release on disconnect. No server, no real time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import prometheus_client
import pytest
from lockfakes import Clock

from kubescaler.domain.errors import Conflict, DependencyUnavailable, Forbidden
from kubescaler.domain.locks import LockOutcome
from kubescaler.domain.models import Binding
from kubescaler.domain.sse import (
    DataEvent,
    Hello,
    LockLost,
    Reconnect,
    SseParser,
    Superseded,
    decode,
)
from kubescaler.domain.stream import Drops
from kubescaler.entrypoints.sse_stream import SERVER_SEND, Pump, pump, with_server_send
from kubescaler.services.streaming import Draining, Item, StreamHub, StreamSession, pick_group
from kubescaler.settings import LockSettings, Settings, StreamSettings

SETTINGS = Settings(
    instance="unit",
    lock=LockSettings(ttl_ms=3000, refresh_interval_ms=1000),
    stream=StreamSettings(events_per_s=0, queue_events=2, event_bytes=16),
)
USER = uuid.UUID(int=7)


def out(result: str, owner: str, profile: uuid.UUID, **kw: object) -> LockOutcome:
    return LockOutcome(
        request_id=uuid.uuid4().hex,
        action="acquire" if result in ("granted", "denied") else "refresh",
        result=result,  # type: ignore[arg-type]
        user_id=USER,
        profile_id=profile,
        owner=owner,
        at_ms=0,
        **kw,  # type: ignore[arg-type]
    )


@dataclass
class FakeBase:
    unbound: set[uuid.UUID] = field(default_factory=set)

    async def binding(self, user_id: uuid.UUID, profile_id: uuid.UUID) -> Binding:
        return Binding(user_id=user_id, profile_id=profile_id, bound=profile_id not in self.unbound)


@dataclass
class FakeLocks:
    """Grants tokens 1, 2, ...; ``refresh_with`` answers refreshes (an exception is raised)."""

    clock: Clock
    token: int = 0
    holder: dict[uuid.UUID, str] = field(default_factory=dict)
    refresh_with: LockOutcome | Exception | None = None
    hold_refreshes: asyncio.Event | None = None
    refreshes: list[tuple[uuid.UUID, int]] = field(default_factory=list)
    timeouts: list[int | None] = field(default_factory=list)
    releases: list[tuple[uuid.UUID, int]] = field(default_factory=list)

    async def acquire(self, user_id: uuid.UUID, profile_id: uuid.UUID, owner: str) -> LockOutcome:
        if self.holder.setdefault(profile_id, owner) != owner:
            raise Conflict("held", holder_expires_at_ms=self.clock() + 3000)
        self.token += 1
        return out(
            "granted",
            owner,
            profile_id,
            fencing_token=self.token,
            expires_at_ms=self.clock() + 3000,
        )

    async def refresh(
        self,
        user_id: uuid.UUID,
        profile_id: uuid.UUID,
        owner: str,
        token: int = 0,
        timeout_ms: int | None = None,
    ) -> LockOutcome:
        self.refreshes.append((profile_id, token))
        self.timeouts.append(timeout_ms)
        if self.hold_refreshes is not None:
            await self.hold_refreshes.wait()
        if isinstance(self.refresh_with, Exception):
            raise self.refresh_with
        return self.refresh_with or out(
            "refreshed", owner, profile_id, fencing_token=token, expires_at_ms=self.clock() + 3000
        )

    async def release(
        self, user_id: uuid.UUID, profile_id: uuid.UUID, owner: str, token: int = 0
    ) -> LockOutcome:
        self.releases.append((profile_id, token))
        return out("released", owner, profile_id)


@dataclass
class Hub:
    clock: Clock
    base: FakeBase
    locks: FakeLocks
    hub: StreamHub

    async def stream(self, owner: str = "s1", profile: uuid.UUID | None = None) -> Opened:
        session = await self.hub.open(USER, profile or uuid.uuid4(), owner)
        opened = Opened(session, session.events())
        assert isinstance(await opened.next(), Hello)
        return opened


@dataclass
class Opened:
    session: StreamSession
    events: AsyncIterator[Item]

    async def next(self) -> Item:
        return await asyncio.wait_for(anext(self.events), 1)

    async def rest(self) -> list[Item]:
        return [item async for item in self.events]


def hub_with(settings: Settings = SETTINGS) -> Hub:
    clock = Clock()
    base, locks = FakeBase(), FakeLocks(clock)
    return Hub(clock, base, locks, StreamHub(settings, base, locks, clock))


def data_event(session: StreamSession, item: Item) -> DataEvent:
    """A queued data event, written on the wire and read back as the client reads it."""
    assert isinstance(item, tuple)
    (msg,) = SseParser().feed(bytes(session.frames.frame(*item)))
    event = decode(msg)
    assert isinstance(event, DataEvent)
    return event


def sample(name: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name) or 0.0


def test_drops_number_every_event_and_report_the_gap_on_the_next_one_sent() -> None:
    """seq counts sent and dropped events; the next event sent says how many were dropped."""
    drops = Drops()
    assert drops.tick(room=True) == (1, 0)
    assert drops.tick(room=False) is None
    assert drops.tick(room=False) is None
    assert drops.tick(room=True) == (4, 2)
    assert drops.tick(room=True) == (5, 0)


async def test_a_slow_client_has_events_dropped_not_buffered() -> None:
    """Queue of 2: five due events while the client reads nothing queue two and drop three;
    the next one sent carries dropped=3 and seq=6."""
    h = hub_with()
    opened = await h.stream()
    before = sample("kubescaler_stream_dropped_events_total")
    for _ in range(5):
        opened.session.produce(ts_ms=1234)
    assert sample("kubescaler_stream_dropped_events_total") == before + 3
    first = data_event(opened.session, await opened.next())
    assert (first.seq, first.dropped, first.ts_ms) == (1, 0, 1234)
    await opened.next()
    opened.session.produce(ts_ms=1250)
    late = data_event(opened.session, await opened.next())
    assert (late.seq, late.dropped, late.token, late.instance) == (6, 3, 1, "unit")
    assert len(late.payload) == 16


async def test_a_profile_the_user_is_not_bound_to_is_forbidden() -> None:
    """open: base says not bound, so 403 and no lock is asked for."""
    h = hub_with()
    profile = uuid.uuid4()
    h.base.unbound.add(profile)
    with pytest.raises(Forbidden):
        await h.hub.open(USER, profile, "s1")
    assert h.locks.token == 0


async def test_a_pair_held_by_another_session_is_a_conflict() -> None:
    """open: the lock is another session's, so the Conflict (409) goes to the client."""
    h = hub_with()
    profile = uuid.uuid4()
    await h.stream("s1", profile)
    with pytest.raises(Conflict):
        await h.hub.open(USER, profile, "s2")


async def test_refresh_rounds_send_only_the_streams_due_and_all_at_once() -> None:
    """Nothing is due before the interval; after it, every stream's refresh goes in one round
    with its own fencing token, and the next turn is one interval later."""
    h = hub_with()
    streams = [await h.stream(f"s{i}") for i in range(3)]
    assert await h.hub.refresh_due() == 0
    h.clock.now += 1000
    assert await h.hub.refresh_due() == 3
    assert sorted(t for _, t in h.locks.refreshes) == [1, 2, 3]
    assert all(s.session.expires_at_ms == h.clock.now + 3000 for s in streams)
    assert await h.hub.refresh_due() == 0


async def test_a_lost_lock_ends_the_stream_with_lock_lost() -> None:
    """refresh answered lost (not the owner): the stream's last event is lock-lost."""
    h = hub_with()
    opened = await h.stream()
    opened.session.produce(ts_ms=0)
    h.locks.refresh_with = out("lost", "s1", uuid.uuid4(), detail="not the owner any more")
    h.clock.now += 1000
    await h.hub.refresh_due()
    assert await opened.rest() == [LockLost(reason="not the owner any more")]
    assert h.hub.sessions == set()


async def test_a_refresh_superseded_by_a_newer_grant_ends_with_superseded() -> None:
    """refresh answered lost with superseded_by: the stream ends with superseded naming both
    tokens."""
    h = hub_with()
    opened = await h.stream()
    h.locks.refresh_with = out("lost", "s1", uuid.uuid4(), fencing_token=1, superseded_by=4)
    h.clock.now += 1000
    await h.hub.refresh_due()
    (last,) = await opened.rest()
    assert isinstance(last, Superseded)
    assert (last.token, last.held_token) == (4, 1)


async def test_an_unanswered_refresh_is_tried_again_soon_until_the_hold_would_lapse() -> None:
    """No answer: counted, streaming goes on and the next try comes after retry_ms (a quarter
    of the interval), not a whole interval; when the hold would lapse before the next try,
    the stream ends with lock-lost "refresh failed"."""
    h = hub_with()
    opened = await h.stream()
    h.locks.refresh_with = DependencyUnavailable("lock-keeper", "no answer")
    before = sample("kubescaler_stream_refresh_failures_total")
    assert h.hub.refresh_retry_ms == 250
    h.clock.now += 1000
    assert await h.hub.refresh_due() == 1
    assert not opened.session.finished
    h.clock.now += 250
    assert await h.hub.refresh_due() == 1  # tried again a quarter interval later
    tries = 2
    while not opened.session.finished:
        h.clock.now += 250
        tries += await h.hub.refresh_due()
    assert sample("kubescaler_stream_refresh_failures_total") == before + tries
    assert h.clock.now + 250 >= opened.session.expires_at_ms
    assert await opened.rest() == [LockLost(reason="refresh failed")]


async def test_drain_tells_every_stream_to_reconnect_and_refuses_new_ones() -> None:
    """SIGTERM's drain: open streams end with reconnect (their session named), new opens are
    refused with 503 Draining, and no lock is released (it is handed over)."""
    h = hub_with()
    opened = await h.stream("s9")
    h.hub.drain()
    assert await opened.rest() == [Reconnect(reason="draining", session="s9")]
    with pytest.raises(Draining):
        await h.hub.open(USER, uuid.uuid4(), "s9")
    assert h.locks.releases == []


async def test_a_newer_grant_in_the_log_supersedes_the_older_stream_of_its_pair() -> None:
    """follow(): a granted record with a larger token ends the pair's stream with superseded;
    one with an older token, or for another pair, does nothing."""
    h = hub_with()
    profile = uuid.uuid4()
    opened = await h.stream("s1", profile)

    async def log() -> AsyncIterator[LockOutcome]:
        yield out("granted", "s1", profile, fencing_token=1)
        yield out("granted", "s1", uuid.uuid4(), fencing_token=9)
        assert not opened.session.finished
        yield out("granted", "s1", profile, fencing_token=2)

    await h.hub.follow(log())
    (last,) = await opened.rest()
    assert isinstance(last, Superseded)
    assert (last.token, last.held_token) == (2, 1)


async def test_reopening_a_pair_here_ends_the_older_stream_at_once() -> None:
    """The same session opening its pair again on this instance: the older stream ends with
    superseded before the new one starts."""
    h = hub_with()
    profile = uuid.uuid4()
    older = await h.stream("s1", profile)
    newer = await h.stream("s1", profile)
    (last,) = await older.rest()
    assert isinstance(last, Superseded)
    assert not newer.session.finished


async def test_release_on_disconnect_frees_the_pair_with_its_token() -> None:
    """release_on_disconnect: a client that goes away releases its grant's token; a stream
    that ended because its lock was lost releases nothing."""
    settings = Settings(
        instance="unit",
        lock=SETTINGS.lock,
        stream=StreamSettings(events_per_s=0, queue_events=2, release_on_disconnect=True),
    )
    h = hub_with(settings)
    gone = await h.stream("s1")
    await gone.events.aclose()  # type: ignore[attr-defined]
    lost = await h.stream("s2")
    lost.session.finish(LockLost(reason="x"))
    await lost.rest()
    await h.hub.wait_background()
    assert h.locks.releases == [(gone.session.grant.profile_id, 1)]


async def test_the_hubs_producer_serves_its_streams_in_turns() -> None:
    """One event a second: streams fill ten groups of (here) two in turn, and a tick of group
    g queues an event for g's streams only, so a second of ticks gives every stream one."""
    settings = Settings(
        instance="unit",
        lock=SETTINGS.lock,
        stream=StreamSettings(events_per_s=1, queue_events=4, event_bytes=16),
    )
    h = hub_with(settings)
    h.hub.group_streams = 2
    streams = [await h.stream(f"s{i}") for i in range(20)]
    assert [len(g) for g in h.hub.groups] == [2] * 10
    h.hub.produce(0)
    assert [len(s.session.queue) for s in streams] == [int(i < 2) for i in range(20)]
    for group in range(1, 10):
        h.hub.produce(group)
    assert all(len(s.session.queue) == 1 for s in streams)


def test_new_streams_fill_a_group_before_the_next_one_is_used() -> None:
    """Few streams share one group (one producer wake per interval); a full group (the cap)
    sends newcomers to the next; when every group is full, the smallest takes them."""
    assert pick_group([0, 0, 0], cap=2) == 0
    assert pick_group([1, 0, 0], cap=2) == 0
    assert pick_group([2, 0, 0], cap=2) == 1
    assert pick_group([1, 1, 0], cap=2) == 0  # streams left group 0: it fills up again first
    assert pick_group([2, 2, 2], cap=2) == 0
    assert pick_group([3, 2, 3], cap=2) == 1


async def test_a_stream_has_one_refresh_in_flight_and_waits_longer_than_an_open() -> None:
    """A round still waiting on the keeper does not block the next round, and does not make it
    send the same stream's refresh twice; refreshes wait max(request timeout, interval, TTL/3)
    for their answer."""
    h = hub_with()
    slow = await h.stream("s1")
    h.clock.now += 1000
    h.locks.hold_refreshes = asyncio.Event()
    first = asyncio.create_task(h.hub.refresh_due())
    await asyncio.sleep(0)
    fast = await h.stream("s2")
    h.clock.now += 1000
    h.locks.hold_refreshes.set()  # later rounds answer at once
    assert await h.hub.refresh_due() == 1  # s2 only: s1's refresh is still in flight
    assert await first == 1
    assert [p for p, _ in h.locks.refreshes] == [
        slow.session.grant.profile_id,
        fast.session.grant.profile_id,
    ]
    assert h.locks.timeouts == [3000, 3000]


# -- handing events to the server (entrypoints.sse_stream.Pump) ----------------------------------


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

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        msgs = SseParser().feed(b"".join(self.bodies))
        return [(m.event, msgspec.json.decode(m.data)) for m in msgs]


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
    assert [(e["seq"], e["ts_ms"], e["dropped"]) for _, e in server.events()] == [
        (1, 10, 0),
        (2, 20, 0),
        (3, 30, 0),
    ]
    assert sample("kubescaler_stream_sent_events_total") == sent + 3
    session.finish(LockLost(reason="x"))
    await task
    assert server.events()[-1] == ("lock-lost", {"v": 1, "reason": "x"})


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
    assert [(e["seq"], e["dropped"]) for _, e in server.events()] == [
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
    assert [name for name, _ in server.events()] == ["data", "superseded"]


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
    assert [name for name, _ in server.events()] == ["hello", "data"]
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
    assert [name for name, _ in through_app.events()] == ["hello"]
    assert through_app.bodies[-1] == b""  # the end
    assert [name for name, _ in direct.events()] == ["data", "lock-lost"]
