"""Keepers cover each other: the takeover's rules, and the use case over in-memory fakes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from keeperfakes import FakeBeat, FakeRoster
from lockfakes import Clock, FakeLedger, FakeMasters, command

from kubescaler.domain.locks import Delivery
from kubescaler.domain.takeover import (
    Peer,
    Pulse,
    Retire,
    Take,
    inherits,
    may_commit,
    plan,
    verdict,
)
from kubescaler.services.lockkeeping import Handled, LockKeeping
from kubescaler.services.takeover import Fenced, HeartbeatLost, Takeover

INTERVAL, TTL = 200, 700


@dataclass
class Mono:
    """Monotonic milliseconds that move only when a test moves them."""

    now: float = 10_000.0

    def __call__(self) -> float:
        return self.now


def beating_for(pulse: Pulse, mono: Mono, ms: float, every: float = INTERVAL) -> None:
    """Renewals that took, every ``every`` ms for ``ms`` (the clock moves)."""
    end = mono.now + ms
    while mono.now < end:
        mono.now += every
        pulse.renewed(mono.now - 1, mono.now)


def healthy(mono: Mono) -> Pulse:
    pulse = Pulse(INTERVAL, TTL)
    beating_for(pulse, mono, TTL + INTERVAL)
    assert pulse.healthy(mono())
    return pulse


# ------------------------------------------------------------------------------------ the rules


def test_a_peer_is_judged_by_its_heartbeat_then_by_its_connection() -> None:
    """Never registered: unknown (the idle-time claim's); beating: alive; lapsed with its
    heartbeat connection open: silent (maybe stalled); lapsed and closed: dead."""
    assert verdict(Peer(name="old", pending=3)) == "unknown"
    assert verdict(Peer(name="k", registered=True, beating=True)) == "alive"
    assert verdict(Peer(name="k", registered=True, connected=True)) == "silent"
    assert verdict(Peer(name="k", registered=True)) == "dead"


def test_the_plan_takes_from_silent_and_dead_keepers_and_retires_empty_dead_ones() -> None:
    """Silent: take, claims respected; dead: take, claims released; dead and empty: retire;
    alive, unknown, silent-and-empty and this keeper itself: nothing."""
    peers = [
        Peer(name="me", pending=4, registered=True),
        Peer(name="alive", pending=9, registered=True, beating=True),
        Peer(name="unknown", pending=9),
        Peer(name="silent", pending=2, registered=True, connected=True),
        Peer(name="quiet", pending=0, registered=True, connected=True),
        Peer(name="dead", pending=5, registered=True),
        Peer(name="gone", pending=0, registered=True),
    ]
    assert plan("me", peers, healthy=True) == [
        Take("silent", release=False),
        Take("dead", release=True),
        Retire("gone"),
    ]


def test_a_keeper_that_is_not_healthy_itself_judges_nobody() -> None:
    """After a stall of the stream Redis every heartbeat has lapsed at once: no takeover."""
    assert plan("me", [Peer(name="dead", pending=5, registered=True)], healthy=False) == []


def test_health_needs_a_whole_ttl_of_renewals_without_a_gap() -> None:
    """Healthy only after a TTL of renewals; a gap long enough to lapse a peer's heartbeat
    (TTL - interval), or a failure, starts the wait again."""
    mono = Mono()
    pulse = Pulse(INTERVAL, TTL)
    assert not pulse.healthy(mono())
    beating_for(pulse, mono, 600)
    assert not pulse.healthy(mono())  # 400 ms of run so far
    beating_for(pulse, mono, 400)
    assert pulse.healthy(mono())
    mono.now += 3 * INTERVAL  # the keeper's own renewals stopped (a stall)
    assert not pulse.healthy(mono())
    beating_for(pulse, mono, 400)
    assert not pulse.healthy(mono())  # the run restarted after the gap
    beating_for(pulse, mono, 600)
    assert pulse.healthy(mono())
    pulse.failed()
    assert not pulse.healthy(mono())


def test_a_batch_is_committed_unless_its_keeper_may_have_been_found_dead() -> None:
    """Same heartbeat connection: commit, even after a long silence (a paused keeper was never
    found dead: its connection stayed open). Connection replaced after a quick failure (a
    restarted Redis): commit. Replaced after half a TTL or more without a renewal: refuse."""
    mono = Mono()
    pulse = healthy(mono)
    at_claim = pulse.mark()
    mono.now += 5_000  # paused, connection open
    assert may_commit(at_claim, pulse, mono())

    mono2 = Mono()
    quick = healthy(mono2)
    at_claim = quick.mark()
    quick.failed()
    beating_for(quick, mono2, 100, every=100)
    assert may_commit(at_claim, quick, mono2())

    mono3 = Mono()
    slow = healthy(mono3)
    at_claim = slow.mark()
    slow.failed()
    mono3.now += TTL / 2
    assert not may_commit(at_claim, slow, mono3())  # quiet now
    beating_for(slow, mono3, 200)
    assert not may_commit(at_claim, slow, mono3())  # renewing again, but the silence counted


def test_a_name_is_inherited_only_from_a_gone_process() -> None:
    assert inherits(previous_connected=False, previous_beating=False, pending=3)
    assert not inherits(previous_connected=True, previous_beating=False, pending=3)
    assert not inherits(previous_connected=False, previous_beating=True, pending=3)
    assert not inherits(previous_connected=False, previous_beating=False, pending=0)


# ------------------------------------------------------------------------------- the use case


@dataclass
class Keepers:
    """A survivor ``me`` and its ports; ``victim`` claimed ``cmds`` (in flight) and stopped."""

    clock: Clock
    ledger: FakeLedger
    roster: FakeRoster
    takeover: Takeover
    batches: list[list[Handled]]
    handled: asyncio.Event


def survivor(mono: Mono, pulse: Pulse | None = None) -> Keepers:
    clock = Clock()
    ledger = FakeLedger(clock)
    roster = FakeRoster(ledger)
    keeping = LockKeeping(FakeMasters(clock), ledger, clock)
    batches: list[list[Handled]] = []
    reports: list[tuple[str, int, int]] = []
    handled = asyncio.Event()

    async def handle(batch: Sequence[Delivery]) -> None:
        batches.append(await keeping.apply(batch))
        roster.acked()
        handled.set()

    beat = FakeBeat(roster, "me", client_id=1)
    roster.keeper("me", 1, beating=True, connected=True)
    takeover = Takeover(
        "me",
        roster,
        beat,
        pulse or healthy(mono),
        handle,
        report=lambda *r: reports.append(r),
        clock=mono,
    )
    return Keepers(clock, ledger, roster, takeover, batches, handled)


async def victim_in_flight(k: Keepers, n: int, *, connected: bool) -> list[Delivery]:
    """Keeper ``victim`` read ``n`` acquires and claimed them, then stopped beating."""
    k.roster.keeper("victim", 7, beating=False, connected=connected)
    batch = [
        Delivery(f"{i}-0", command("acquire", f"o{i}", clock=k.clock, user=uuid.UUID(int=1000 + i)))
        for i in range(n)
    ]
    await k.ledger.claim([d.cmd for d in batch if d.cmd is not None])
    k.roster.pending["victim"] = list(batch)
    return batch


async def test_a_dead_keepers_claimed_batch_is_released_and_applied_at_once() -> None:
    """Heartbeat lapsed, connection closed: its entries move here, its in-flight claims are
    released, and each command is applied once and acknowledged; the next look retires it."""
    k = survivor(Mono())
    batch = await victim_in_flight(k, 3, connected=False)
    assert await k.takeover.tick() == [Take("victim", release=True)]
    assert [h.path for h in k.batches[0]] == ["applied"] * 3
    assert {out.request_id for out in k.ledger.log} == {d.cmd.request_id for d in batch if d.cmd}
    assert [o.result for o in k.ledger.log] == ["granted"] * 3
    assert k.roster.pending["me"] == []
    assert k.roster.pending["victim"] == []
    assert await k.takeover.tick() == [Retire("victim")]
    assert "victim" not in k.roster.registry
    assert "victim" not in k.roster.pending


async def test_a_silent_keepers_claims_are_respected() -> None:
    """Heartbeat lapsed but its connection is open (it may be paused): its entries move here
    and nothing it claimed is applied again; they stay pending until it commits them."""
    k = survivor(Mono())
    await victim_in_flight(k, 2, connected=True)
    assert await k.takeover.tick() == [Take("victim", release=False)]
    assert [h.path for h in k.batches[0]] == ["busy", "busy"]
    assert k.ledger.log == []
    assert len(k.roster.pending["me"]) == 2
    assert "release victim" not in k.roster.calls


async def test_a_keeper_that_comes_back_before_the_release_keeps_its_claims() -> None:
    """The victim's heartbeat returns between the take and the release: nothing is released
    (the release script checks again) and its commands are left to it."""
    k = survivor(Mono())
    await victim_in_flight(k, 2, connected=False)
    take = k.roster.take

    async def take_then_return(
        victim: str, taker: str, count: int, start: str = "-"
    ) -> list[Delivery]:
        got = await take(victim, taker, count, start)
        k.roster.beating.add(victim)
        return got

    k.roster.take = take_then_return  # type: ignore[method-assign]
    await k.takeover.tick()
    assert [h.path for h in k.batches[0]] == ["busy", "busy"]
    assert k.ledger.log == []


async def test_nothing_is_taken_before_this_keeper_has_beaten_a_whole_ttl() -> None:
    """A keeper that just started (or just came through a stall) does not look yet."""
    mono = Mono()
    pulse = Pulse(INTERVAL, TTL)
    beating_for(pulse, mono, INTERVAL)
    k = survivor(mono, pulse)
    await victim_in_flight(k, 2, connected=False)
    assert await k.takeover.tick() == []
    assert k.roster.calls == []


async def test_a_restarted_keeper_inherits_what_its_name_left() -> None:
    """A process starting under the name of a dead one (a restarted container keeps its pod's
    name) takes over that name's pending commands, releasing their claims, before it beats."""
    mono = Mono()
    k = survivor(mono, Pulse(INTERVAL, TTL))
    k.roster.registry["me"] = 99  # the earlier process's connection, closed
    k.roster.beating.discard("me")
    batch = [Delivery("1-0", command("acquire", "a", clock=k.clock))]
    await k.ledger.claim([d.cmd for d in batch if d.cmd is not None])
    k.roster.pending["me"] = batch
    assert await k.takeover.inherit() == 1
    assert [o.result for o in k.ledger.log] == ["granted"]
    k.roster.open_ids.add(99)  # had that process been alive: nothing is taken
    k.roster.pending["me"] = [Delivery("2-0", command("acquire", "b", clock=k.clock))]
    assert await k.takeover.inherit() == 0


async def test_the_loops_beat_take_over_and_leave_on_stop() -> None:
    """Started, the keeper beats, becomes healthy, takes a dead keeper's batch by itself;
    stopped, it leaves the group (nothing pending) and closes its heartbeat."""
    k = survivor(Mono())
    k.takeover.pulse = Pulse(10, 30)
    k.takeover.clock = lambda: asyncio.get_running_loop().time() * 1000
    await victim_in_flight(k, 2, connected=False)
    await k.takeover.start()
    try:
        async with asyncio.timeout(5):
            await k.handled.wait()
    finally:
        await k.takeover.stop()
    assert [o.result for o in k.ledger.log] == ["granted", "granted"]
    assert "leave me" in k.roster.calls
    assert "me" not in k.roster.registry
    assert 1 not in k.roster.open_ids


async def test_a_batch_is_not_committed_when_its_keeper_may_have_been_found_dead() -> None:
    """Between claim and commit the heartbeat connection failed and half a TTL went by: the
    commit is refused (HeartbeatLost), nothing is logged or acknowledged, the claims stay."""
    mono, clock = Mono(), Clock()
    pulse, ledger = healthy(mono), FakeLedger(clock)
    masters = FakeMasters(clock)

    async def lose_heartbeat(_: object) -> None:
        pulse.failed()
        mono.now += TTL / 2

    masters.before_vote = lose_heartbeat
    keeping = LockKeeping(masters, Fenced(ledger, pulse, mono), clock)
    cmd = command("acquire", "a", clock=clock)
    with pytest.raises(HeartbeatLost):
        await keeping.apply([Delivery("1-0", cmd)])
    assert ledger.log == []
    assert ledger.acked == []
    assert ledger.applied == {cmd.request_id: None}
    again = command("acquire", "b", clock=clock, user=cmd.profile_id)  # a later batch: fine
    await keeping.apply([Delivery("2-0", again)])
    assert [o.result for o in ledger.log] == ["granted"]


async def test_stop_ends_the_loops_even_when_a_cancellation_comes_out_as_a_timeout() -> None:
    """On Python 3.11 a cancellation meeting an expiring asyncio.timeout (a Redis call's) can
    come out as TimeoutError, which the watch loop survives: stop cancels until it ends."""
    k = survivor(Mono())
    await k.takeover.start()
    looking = asyncio.Event()

    async def look_swallowing_cancel() -> object:
        looking.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise TimeoutError from None
        raise AssertionError("not cancelled")

    k.roster.look = look_swallowing_cancel  # type: ignore[assignment]
    async with asyncio.timeout(5):
        await looking.wait()
        await k.takeover.stop()


async def test_what_stays_pending_busy_is_not_taken_again_in_the_same_takeover() -> None:
    """Inheriting its own name, a keeper pages through the pending list: commands another
    keeper is applying stay pending, busy, and the takeover ends instead of taking them again."""
    mono = Mono()
    k = survivor(mono, Pulse(INTERVAL, TTL))
    k.takeover.batch = 2
    k.roster.registry["me"] = 99
    k.roster.beating.discard("me")
    batch = [Delivery(f"{i}-0", command("acquire", f"o{i}", clock=k.clock)) for i in range(5)]
    k.roster.pending["me"] = batch
    for d in batch:  # in flight on another keeper (the release below leaves them)
        assert d.cmd is not None
        k.ledger.applied[d.cmd.request_id] = None
    k.roster.release = _release_nothing  # type: ignore[method-assign]
    async with asyncio.timeout(5):
        assert await k.takeover.inherit() == 5
    assert [len(b) for b in k.batches] == [2, 2, 1]
    assert {h.path for b in k.batches for h in b} == {"busy"}


async def _release_nothing(victim: str, client_id: int, request_ids: Sequence[str]) -> int:
    return 0
