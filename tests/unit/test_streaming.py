"""Stream sessions and their hub on a fake clock with fake base and lock ports: drops, refresh
verdicts, supersession, drain, release on disconnect. No server, no real time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from streamfakes import SETTINGS, USER, hub_with, out, sample

from kubescaler.domain.errors import Conflict, DependencyUnavailable, Forbidden
from kubescaler.domain.locks import LockOutcome
from kubescaler.domain.sse import DataEvent, LockLost, Reconnect, SseParser, Superseded, decode
from kubescaler.domain.stream import Drops
from kubescaler.services.stream_session import Item, StreamSession
from kubescaler.services.streaming import Draining, pick_group
from kubescaler.settings import Settings, StreamSettings


def data_event(session: StreamSession, item: Item) -> DataEvent:
    """A queued data event, written on the wire and read back as the client reads it."""
    assert isinstance(item, tuple)
    (msg,) = SseParser().feed(bytes(session.frames.frame(*item)))
    event = decode(msg)
    assert isinstance(event, DataEvent)
    return event


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
