"""Quorum fencing: tokens that never go back when one store is lost, wiped or stale, and the
rule that brings a master that came back empty into the votes again."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from lockfakes import PROFILE, TTL, USER, Clock, FakeLedger, FakeMasters, command

from kubescaler.domain import lockrules as rules
from kubescaler.domain.lockrules import Round, Vote, VoteOp
from kubescaler.domain.locks import Action, Delivery, LockOutcome, pair_name
from kubescaler.domain.recovery import MasterState, recovery
from kubescaler.services.lockkeeping import LockKeeping

PAIR = pair_name(USER, PROFILE)


class Keeper:
    def __init__(self) -> None:
        self.clock = Clock()
        self.masters = FakeMasters(self.clock)
        self.ledger = FakeLedger(self.clock)
        self.keeping = LockKeeping(self.masters, self.ledger, self.clock, "quorum")

    async def one(self, action: Action, owner: str, token: int = 0) -> LockOutcome:
        cmd = command(action, owner, token, clock=self.clock)
        (handled,) = await self.keeping.apply([Delivery(b"1-0", cmd)])
        assert handled.outcome is not None
        return handled.outcome

    async def hold_and_free(self, owner: str) -> int:
        """A grant, then its release: its token."""
        got = await self.one("acquire", owner)
        assert got.result == "granted", got.detail
        await self.one("release", owner, got.fencing_token)
        return got.fencing_token


@pytest.fixture
def k() -> Keeper:
    return Keeper()


async def test_tokens_go_on_rising_when_the_stream_redis_comes_back_empty(k: Keeper) -> None:
    """The stream Redis holds no counter any more: a new, empty one (a lost volume) changes
    nothing about the next token."""
    tokens = [await k.hold_and_free(o) for o in ("a", "b")]
    k.ledger = FakeLedger(k.clock)
    k.keeping = LockKeeping(k.masters, k.ledger, k.clock, "quorum")
    tokens.append(await k.hold_and_free("c"))
    assert tokens == [1, 2, 3]


async def test_the_max_over_changing_quorums_cannot_go_back(k: Keeper) -> None:
    """docs/locks.md's counterexample for per-master counters without a write-back: A down,
    grants through {B,C} take B=C to 5; A back, a grant through {A,B}; then one through {A,C}.
    With each token written back to a quorum before it is announced, it goes 6, 7."""
    k.masters.down = {0}
    tokens = [await k.hold_and_free(f"s{i}") for i in range(5)]
    assert tokens == [1, 2, 3, 4, 5]
    k.masters.down = {2}
    tokens.append(await k.hold_and_free("x"))
    k.masters.down = {1}
    tokens.append(await k.hold_and_free("y"))
    assert tokens[5:] == [6, 7]


async def test_a_master_that_came_back_empty_abstains_and_tokens_still_rise(k: Keeper) -> None:
    """Master 0 wiped: it answers nothing until caught up; grants need the other two and their
    tokens are above every earlier one; with a second master down there is no grant at all."""
    before = [await k.hold_and_free(o) for o in ("a", "b")]
    k.masters.wipe(0)
    after = await k.hold_and_free("c")
    assert after > max(before)
    k.masters.down = {1}
    out = await k.one("acquire", "d")
    assert out.result == "quorum_unavailable"
    assert "recovering" in out.detail.lower() or "down" in out.detail


async def test_a_token_that_lands_on_too_few_masters_is_no_grant(k: Keeper) -> None:
    """One master down, and a racing fence of the same pair (another keeper, the same session
    re-entering) lands on another between this acquire's vote and its fence: the token lands
    on one master of three: no grant, its keys freed, and the next grant's token is above the
    racing one."""
    k.masters.down = {2}

    async def racing_fence(ops: Sequence[VoteOp]) -> None:
        if ops[0].kind == "fence":
            k.masters.counters[1][PAIR] = ops[0].token

    k.masters.before_vote = racing_fence
    first = k.masters.vote

    async def hooked(ops: Sequence[VoteOp]) -> Round:
        k.masters.before_vote = racing_fence if ops and ops[0].kind == "fence" else None
        return await first(ops)

    k.masters.vote = hooked  # type: ignore[method-assign]
    out = await k.one("acquire", "alice")
    assert out.result == "quorum_unavailable"
    assert "too few masters" in out.detail
    assert k.masters.holders(PAIR) == [None, None, None]
    k.masters.vote = first  # type: ignore[method-assign]
    k.masters.before_vote = None
    assert (await k.one("acquire", "bob")).fencing_token == 2


async def test_a_failed_re_entry_leaves_the_owners_earlier_grant(k: Keeper) -> None:
    """Alice holds the pair; with one master down she re-enters (a reconnect), and her new
    token lands on too few masters: no grant - but the key of her earlier grant, whose stream
    still runs, stays on every master that held it, so bob is denied rather than granted a
    pair alice still streams (the fault suite's drain found the keeper freeing it)."""
    first = await k.one("acquire", "alice")
    assert first.result == "granted"
    k.masters.down = {2}
    fence = k.masters.fence

    async def one_master_silent(ops: Sequence[VoteOp]) -> Round:
        k.masters.down = {1, 2}
        try:
            return await fence(ops)
        finally:
            k.masters.down = {2}

    k.masters.fence = one_master_silent  # type: ignore[method-assign]
    again = await k.one("acquire", "alice")
    assert again.result == "quorum_unavailable"
    assert "too few masters" in again.detail
    assert k.masters.holders(PAIR)[:2] == ["alice", "alice"]
    assert (await k.one("acquire", "bob")).result == "denied"


def test_a_fence_counts_only_the_masters_the_acquire_won() -> None:
    """A token that landed on two masters, one of which refused the acquire (another owner's
    key there), is not on a quorum of the grant's own masters."""
    acquire = rules.tally([Vote(answer="won"), Vote(answer="won"), Vote(answer="refused")])
    fence = [Vote(answer="won"), Vote(answer="silent"), Vote(answer="won")]
    assert not rules.fenced(acquire, fence)
    assert rules.fenced(acquire, [Vote(answer="won"), Vote(answer="won"), Vote(answer="silent")])


def test_the_next_token_is_above_every_counter_that_answered_and_the_batchs_own() -> None:
    got = rules.tally([Vote(answer="won", counter=4), Vote(answer="refused", counter=9)])
    assert rules.next_token(got) == 10
    assert rules.next_token(got, after=12) == 13


def ready(now: int = 0) -> MasterState:
    return MasterState(ready=True, now_ms=now)


def test_recovery_starts_a_new_deployment_at_once_when_no_master_is_ready() -> None:
    fresh = MasterState(ready=False, now_ms=5)
    assert recovery([fresh, fresh, None], TTL) == ["bootstrap", "bootstrap", "wait"]
    # no quorum answered: nothing starts (the one noted keeps waiting for its peers)
    assert recovery([fresh, None, None], TTL) == ["note", "wait", "wait"]


def test_a_master_back_empty_is_noted_then_caught_up_after_a_lock_lifetime() -> None:
    back = MasterState(ready=False, since_ms=0, now_ms=1_000)
    assert recovery([back, ready(), ready()], TTL) == ["note", "ready", "ready"]
    early = MasterState(ready=False, since_ms=1_000, now_ms=1_000 + TTL - 1)
    assert recovery([early, ready(), ready()], TTL) == ["wait", "ready", "ready"]
    due = MasterState(ready=False, since_ms=1_000, now_ms=1_000 + TTL)
    assert recovery([due, ready(), ready()], TTL) == ["catch up", "ready", "ready"]
    # every other master must answer (and be ready): their counters are what it copies
    assert recovery([due, ready(), None], TTL) == ["wait", "ready", "wait"]


async def test_a_grant_says_on_how_many_masters_its_token_landed(k: Keeper) -> None:
    """Version 2 of the outcome: ``fenced_on`` counts the masters that took the token."""
    assert (await k.one("acquire", "a")).fenced_on == 3
    k.masters.down = {0}
    await k.one("release", "a", 1)
    assert (await k.one("acquire", "b")).fenced_on == 2


def test_a_version_1_log_record_reads_as_fenced_on_no_master() -> None:
    from kubescaler.domain.locks import record_from_fields

    fields = {"v": "1", "request_id": "r", "action": "acquire", "result": "granted",
              "user_id": str(USER), "profile_id": str(PROFILE), "owner": "a", "at_ms": "5",
              "fencing_token": "7"}  # fmt: skip
    record = record_from_fields(fields, "1-0")
    assert (record.v, record.fencing_token, record.fenced_on) == (1, 7, 0)
