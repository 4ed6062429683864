"""The lock-keeper's use case against in-memory masters and ledger: every path, no server."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from lockfakes import PROFILE, TTL, USER, Clock, FakeLedger, FakeMasters, command

from kubescaler.domain.lockrules import Round, VoteOp
from kubescaler.domain.locks import Action, Delivery, LockCommand, LockOutcome, pair_name
from kubescaler.services.lockkeeping import Handled, LockKeeping

PAIR = pair_name(USER, PROFILE)
PROFILE_2 = uuid.UUID(int=999)
PAIR_2 = pair_name(USER, PROFILE_2)


def _uuid(i: int) -> uuid.UUID:
    return uuid.UUID(int=1000 + i)


@dataclass
class Keeper:
    clock: Clock
    masters: FakeMasters
    ledger: FakeLedger
    keeping: LockKeeping

    def cmd(self, action: Action, owner: str, token: int = 0, **kw: object) -> LockCommand:
        return command(action, owner, token, clock=self.clock, **kw)  # type: ignore[arg-type]

    async def run(self, *cmds: LockCommand | None) -> list[Handled]:
        return await self.keeping.apply(
            [Delivery(f"{i}-0".encode(), c) for i, c in enumerate(cmds)]
        )

    async def one(self, action: Action, owner: str, token: int = 0, **kw: object) -> LockOutcome:
        (handled,) = await self.run(self.cmd(action, owner, token, **kw))
        assert handled.outcome is not None
        return handled.outcome


@pytest.fixture(params=["quorum", "stream"])
def k(request: pytest.FixtureRequest) -> Keeper:
    """A keeper over fake masters and ledger, with either fencing (every rule holds in both)."""
    clock = Clock()
    masters, ledger = FakeMasters(clock), FakeLedger(clock)
    return Keeper(clock, masters, ledger, LockKeeping(masters, ledger, clock, request.param))


async def test_a_grant_carries_a_token_and_is_logged_marked_answered_and_acked(k: Keeper) -> None:
    """acquire: granted with token 1 and the validity's end; one log record, the pair marked
    launched, the reply on the command's channel, its entry acknowledged."""
    start = k.clock.now
    out = await k.one("acquire", "alice")
    assert out.result == "granted"
    assert out.fencing_token == 1
    assert out.expires_at_ms == start + TTL - k.masters.elapsed_ms - (int(TTL * 0.01) + 2)
    assert k.ledger.log == [out]
    assert k.ledger.launched == {PAIR: "alice"}
    assert k.ledger.published == [("reply:test", [out])]
    assert k.ledger.acked == [b"0-0"]
    assert k.masters.holders(PAIR) == ["alice"] * 3


async def test_another_owner_is_denied_with_the_holder_and_its_expiry(k: Keeper) -> None:
    """acquire by a second owner: denied, naming the holder and when its hold lapses."""
    first = await k.one("acquire", "alice")
    out = await k.one("acquire", "bob")
    assert out.result == "denied"
    assert out.holder == "alice"
    assert first.expires_at_ms <= out.expires_at_ms <= k.clock.now + TTL
    assert k.masters.holders(PAIR) == ["alice"] * 3


async def test_the_same_owner_re_enters_with_a_larger_token(k: Keeper) -> None:
    """Re-entrance: the same session's second acquire is granted a newer token."""
    first = await k.one("acquire", "alice")
    second = await k.one("acquire", "alice")
    assert (first.fencing_token, second.fencing_token) == (1, 2)


async def test_refresh_by_the_owner_extends_and_by_anyone_else_is_lost(k: Keeper) -> None:
    """refresh: refreshed with a later expiry for the owner; lost for another session."""
    grant = await k.one("acquire", "alice")
    k.clock.now += 10_000
    fresh = await k.one("refresh", "alice", grant.fencing_token)
    assert fresh.result == "refreshed"
    assert fresh.fencing_token == grant.fencing_token
    assert fresh.expires_at_ms > grant.expires_at_ms + 9_000
    lost = await k.one("refresh", "bob", grant.fencing_token)
    assert (lost.result, lost.detail) == ("lost", "not the owner any more")


async def test_a_lapsed_lock_cannot_be_refreshed(k: Keeper) -> None:
    """refresh after the TTL ran out: lost, and the pair is free for anyone."""
    grant = await k.one("acquire", "alice")
    k.clock.now += TTL + 1
    assert (await k.one("refresh", "alice", grant.fencing_token)).result == "lost"
    assert (await k.one("acquire", "bob")).result == "granted"


async def test_a_superseded_grant_is_lost_on_refresh_and_frees_nothing_on_release(
    k: Keeper,
) -> None:
    """Same session granted twice: the older token's refresh is lost naming the newer token,
    its release is "not held" and frees nothing; the newer grant keeps the pair."""
    old = await k.one("acquire", "alice")
    new = await k.one("acquire", "alice")
    stale = await k.one("refresh", "alice", old.fencing_token)
    assert (stale.result, stale.superseded_by) == ("lost", new.fencing_token)
    freed = await k.one("release", "alice", old.fencing_token)
    assert (freed.result, freed.superseded_by) == ("released", new.fencing_token)
    assert freed.detail.startswith("not held")
    if k.keeping.fencing == "stream":  # the keeper knew from the stream Redis's counter
        assert k.masters.rounds[-1][0].kind == "extend"  # the stale release reached no master
    else:  # the masters refused it: the newer token is above the older one on each
        assert k.masters.rounds[-1][0].kind == "release"
    assert k.masters.holders(PAIR) == ["alice"] * 3
    assert (await k.one("acquire", "bob")).result == "denied"
    assert (await k.one("refresh", "alice", new.fencing_token)).result == "refreshed"


async def test_release_frees_the_pair_and_unmarks_it(k: Keeper) -> None:
    """release by the owner: released, the masters' keys gone, the launched marker gone."""
    grant = await k.one("acquire", "alice")
    out = await k.one("release", "alice", grant.fencing_token)
    assert (out.result, out.detail) == ("released", "")
    assert k.masters.holders(PAIR) == [None] * 3
    assert k.ledger.launched == {}
    assert (await k.one("acquire", "bob")).fencing_token == 2


async def test_release_by_someone_else_is_not_held(k: Keeper) -> None:
    """release by a session that does not hold the pair: "not held", nothing freed."""
    await k.one("acquire", "alice")
    out = await k.one("release", "bob")
    assert (out.result, out.detail) == ("released", "not held")
    assert k.masters.holders(PAIR) == ["alice"] * 3
    assert k.ledger.launched == {PAIR: "alice"}


async def test_a_release_racing_a_newer_grant_of_its_session_cannot_free_it(k: Keeper) -> None:
    """The gap issue 11 left: a release by token 1 that saw token 1 as newest, with the same
    session's grant 2 landing before its vote, is refused by the masters' token bound."""
    old = await k.one("acquire", "alice")
    newer: list[LockOutcome] = []

    async def grant_meanwhile(_: Sequence[VoteOp]) -> None:
        newer.append(await k.one("acquire", "alice"))

    k.masters.before_vote = grant_meanwhile
    out = await k.one("release", "alice", old.fencing_token)
    assert newer[0].fencing_token == 2
    assert (out.result, out.detail.split(":")[0]) == ("released", "not held")
    assert k.masters.holders(PAIR) == ["alice"] * 3
    assert (await k.one("acquire", "bob")).result == "denied"


async def test_a_command_past_its_deadline_is_expired_and_never_applied(k: Keeper) -> None:
    """A command taken after its deadline: expired, logged and answered; no master touched."""
    cmd = k.cmd("acquire", "alice", deadline_in_ms=-1)
    (handled,) = await k.run(cmd)
    assert handled.outcome is not None
    assert handled.outcome.result == "expired"
    assert k.masters.rounds == []
    assert k.ledger.log == [handled.outcome]


async def test_a_redelivered_command_is_answered_again_and_applied_once(k: Keeper) -> None:
    """The same request id twice: the second is resent from the store, not voted, not logged,
    and acknowledged; one token was handed out."""
    cmd = k.cmd("acquire", "alice")
    (first,) = await k.run(cmd)
    (again,) = await k.run(cmd)
    assert (first.path, again.path) == ("applied", "redelivered")
    assert again.outcome == first.outcome
    assert len(k.masters.rounds) == (2 if k.keeping.fencing == "quorum" else 1)  # + the fence
    assert len(k.ledger.log) == 1
    counters = k.masters.counters if k.keeping.fencing == "quorum" else [k.ledger.counters]
    assert all(c[PAIR] == 1 for c in counters)
    assert k.ledger.answers() == [first.outcome, first.outcome]
    assert k.ledger.acked == [b"0-0", b"0-0"]


async def test_a_command_another_worker_is_applying_stays_pending(k: Keeper) -> None:
    """A claim held in flight by another worker: no answer, no acknowledgement."""
    cmd = k.cmd("acquire", "alice")
    k.ledger.applied[cmd.request_id] = None
    (handled,) = await k.run(cmd)
    assert handled.path == "busy"
    assert k.ledger.acked == []
    assert k.ledger.published == []


async def test_one_master_down_still_grants_two_down_is_unavailable_and_holds_nothing(
    k: Keeper,
) -> None:
    """Quorum 2 of 3: one silent master changes nothing; two make it quorum_unavailable
    (not denied), and the one master won is released again."""
    k.masters.down = {0}
    assert (await k.one("acquire", "alice")).result == "granted"
    k.masters.down = {0, 1}
    out = await k.one("acquire", "carol", profile=PROFILE_2)
    assert out.result == "quorum_unavailable"
    assert out.detail.startswith("lock quorum unavailable: 1/3 masters answered, 2 needed")
    assert k.masters.holders(PAIR_2) == [None] * 3


async def test_refusals_that_rule_out_a_quorum_deny_even_with_a_master_down(k: Keeper) -> None:
    """Another owner on two masters and the third silent: denied, not unavailable."""
    await k.one("acquire", "alice")
    k.masters.down = {2}
    out = await k.one("acquire", "bob")
    assert (out.result, out.holder) == ("denied", "alice")


async def test_a_quorum_whose_validity_ran_out_during_the_vote_is_no_grant(k: Keeper) -> None:
    """A vote slower than the TTL: quorum_unavailable, and the keys it won are released."""
    k.masters.elapsed_ms = TTL
    out = await k.one("acquire", "alice")
    assert out.result == "quorum_unavailable"
    assert "validity elapsed during the vote" in out.detail
    assert k.masters.holders(PAIR) == [None] * 3


async def test_a_token_read_after_the_validity_is_no_grant(k: Keeper) -> None:
    """The fencing token fixed after the hold's validity ended: no grant, keys released (a
    later grant could otherwise hold a smaller token)."""
    k.ledger.fence_ms = TTL
    if k.keeping.fencing == "quorum":  # the fence round is the masters' second vote

        async def slow_fence(_: Sequence[VoteOp]) -> None:
            k.clock.now += TTL

        k.masters.before_vote = None
        first = k.masters.vote

        async def vote_then_slow(ops: Sequence[VoteOp]) -> Round:
            got = await first(ops)
            if ops and ops[0].kind == "fence":
                await slow_fence(ops)
            return got

        k.masters.vote = vote_then_slow  # type: ignore[method-assign]
    out = await k.one("acquire", "alice")
    assert out.result == "quorum_unavailable"
    assert "validity elapsed before fencing" in out.detail
    assert k.masters.holders(PAIR) == [None] * 3


async def test_a_failing_fence_releases_the_masters_and_gives_the_claims_back(k: Keeper) -> None:
    """The fence fails after the quorum: masters released, claims returned, the batch raises
    (left pending for another worker), nothing logged or acknowledged."""
    k.ledger.fail = "fence"
    if k.keeping.fencing == "quorum":
        first = k.masters.fence

        async def failing(ops: Sequence[VoteOp]) -> Round:
            k.masters.fence = first  # type: ignore[method-assign]
            raise ConnectionError("fence failed")

        k.masters.fence = failing  # type: ignore[method-assign]
    cmd = k.cmd("acquire", "alice")
    with pytest.raises(ConnectionError):
        await k.run(cmd)
    assert k.masters.holders(PAIR) == [None] * 3
    assert cmd.request_id not in k.ledger.applied
    assert (k.ledger.log, k.ledger.acked) == ([], [])


async def test_a_failing_commit_keeps_the_claims(k: Keeper) -> None:
    """The commit may have run when it fails: the claims stay (their in-flight marker lapses
    by itself), so a redelivery can never apply the command a second time."""
    k.ledger.fail = "commit"
    cmd = k.cmd("acquire", "alice")
    with pytest.raises(ConnectionError):
        await k.run(cmd)
    assert "unclaim" not in k.ledger.calls
    assert cmd.request_id in k.ledger.applied


async def test_an_unreadable_entry_is_acknowledged_and_dropped(k: Keeper) -> None:
    """An entry that is no command: acknowledged, unanswered, reported as unreadable."""
    (handled,) = await k.run(None)
    assert handled.path == "unreadable"
    assert k.ledger.acked == [b"0-0"]
    assert k.ledger.published == []


async def test_a_batch_costs_the_same_round_trips_as_one_command(k: Keeper) -> None:
    """Forty commands of every kind: one claim, one vote, one fence, one commit, and one
    reply message per channel, in command order."""
    grants = [k.cmd("acquire", f"o{i}", user=PROFILE_2, profile=_uuid(i)) for i in range(20)]
    await k.run(*grants)
    k.ledger.calls.clear()
    k.masters.rounds.clear()
    k.ledger.published.clear()
    batch = [k.cmd("refresh", f"o{i}", 1, user=PROFILE_2, profile=_uuid(i)) for i in range(20)]
    batch += [
        k.cmd("acquire", f"n{i}", reply_to="reply:other", profile=_uuid(i)) for i in range(20)
    ]
    handled = await k.run(*batch)
    assert [h.outcome.result for h in handled if h.outcome] == ["refreshed"] * 20 + ["granted"] * 20
    if k.keeping.fencing == "stream":
        assert k.ledger.calls == ["claim", "fence", "commit"]
        assert len(k.masters.rounds) == 1
    else:  # the fence is the masters' second round
        assert k.ledger.calls == ["claim", "commit"]
        assert [r[0].kind for r in k.masters.rounds] == ["extend", "fence"]
    assert [ch for ch, _ in k.ledger.published] == ["reply:test", "reply:other"]


async def test_a_legacy_release_without_a_token_frees_the_owners_key(k: Keeper) -> None:
    """Token 0 (a command from before tokens travelled): no bound check, the owner frees it."""
    await k.one("acquire", "alice")
    await k.one("acquire", "alice")
    out = await k.one("release", "alice")
    assert (out.result, out.detail) == ("released", "")
    assert k.masters.holders(PAIR) == [None] * 3
