"""Apply a batch of lock commands exactly once: the lock-keeper's one use case.

It talks to two ports — the Redlock masters (:class:`Masters`), which vote and keep the
fencing counters, and the stream Redis that holds claims, the log, the launched state and
the reply channels (:class:`Ledger`) — and asks ``domain/lockrules.py`` what every answer
means. A batch costs a fixed number of round trips, whatever its size: claim, one vote per
master, one fence per master (only when something was granted: each grant's token written
back to a quorum of the masters it won), commit (which also acknowledges and replies). With
``fencing="stream"`` (the older path, kept to compare them) the fence is one INCR per grant
on the stream Redis instead.

Exactly once: a command is applied only by the worker whose claim on its request id took; the
commit stores its outcome under that id in the same MULTI that logs it, so a redelivery is
answered from the store. A worker that fails before committing gives its claims back and
leaves the entries pending for another worker; one that fails while committing keeps them
(the MULTI may have run), and the in-flight marker lapses by itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, NamedTuple, Protocol

from kubescaler.domain import lockrules as rules
from kubescaler.domain.lockrules import Apply, Busy, Claim, Resend, Round, Tally, Undo, VoteOp
from kubescaler.domain.locks import Delivery, LockCommand, LockOutcome, now_ms


class Masters(Protocol):
    """Redlock over the masters: one round of votes on many ops, and their tally; ``fence`` is
    a round of fence ops (a vote, timed apart)."""

    async def vote(self, ops: Sequence[VoteOp]) -> Round: ...

    async def fence(self, ops: Sequence[VoteOp]) -> Round: ...

    async def undo(self, ops: Sequence[Undo]) -> None: ...

    def tally(self, got: Round, i: int) -> Tally: ...


class Ledger(Protocol):
    """The stream Redis: claims on request ids, the commit with replies (and, for the older
    stream fencing, the counters)."""

    async def claim(self, cmds: Sequence[LockCommand]) -> list[Claim]: ...

    async def unclaim(self, cmds: Sequence[LockCommand]) -> None: ...

    async def fence(self, cmds: Sequence[LockCommand]) -> list[int]: ...

    async def commit(
        self,
        applied: Sequence[tuple[LockOutcome, bool]],
        acks: Sequence[bytes | str],
        replies: Mapping[str, Sequence[LockOutcome]],
    ) -> None: ...


Path = Literal["applied", "redelivered", "busy", "unreadable"]


class Handled(NamedTuple):
    """What became of one delivery, for the worker's metrics."""

    path: Path
    cmd: LockCommand | None
    outcome: LockOutcome | None


class LockKeeping:
    def __init__(
        self,
        masters: Masters,
        ledger: Ledger,
        clock: Callable[[], int] = now_ms,
        fencing: rules.Fencing = "quorum",
    ) -> None:
        self.masters = masters
        self.ledger = ledger
        self.clock = clock
        self.fencing = fencing

    async def apply(self, deliveries: Sequence[Delivery]) -> list[Handled]:
        """Apply, answer and acknowledge a batch; raising leaves it pending for another worker."""
        readable = [d for d in deliveries if d.cmd is not None]
        cmds = [d.cmd for d in readable if d.cmd is not None]
        now = self.clock()  # before the claim: a refresh's time precedes its counter read
        claims = await self.ledger.claim(cmds)
        fresh = [c for c, claim in zip(cmds, claims, strict=True) if isinstance(claim, Apply)]
        try:
            decided = await self._decide(cmds, claims, now)
        except BaseException:
            await self.ledger.unclaim(fresh)
            raise
        handled: list[Handled] = []
        applied: list[tuple[LockOutcome, bool]] = []
        answers: list[tuple[str, LockOutcome]] = []
        acks: list[bytes | str] = [d.receipt for d in deliveries if d.cmd is None]
        for d, claim, (out, freed) in zip(readable, claims, decided, strict=True):
            assert d.cmd is not None
            if isinstance(claim, Busy):
                handled.append(Handled("busy", d.cmd, None))
                continue
            assert out is not None
            if isinstance(claim, Apply):
                applied.append((out, freed))
            answers.append((d.cmd.reply_to, out))
            acks.append(d.receipt)
            handled.append(
                Handled("applied" if isinstance(claim, Apply) else "redelivered", d.cmd, out)
            )
        handled += [Handled("unreadable", None, None) for d in deliveries if d.cmd is None]
        await self.ledger.commit(applied, acks, rules.replies(answers))
        return handled

    async def _decide(
        self, cmds: Sequence[LockCommand], claims: Sequence[Claim], now: int
    ) -> list[tuple[LockOutcome | None, bool]]:
        """Each command's outcome and whether it freed its pair (None: busy, not decided)."""
        if self.fencing == "quorum":  # the stream Redis's counter is not the pair's newest
            claims = [Apply(0) if isinstance(c, Apply) else c for c in claims]
        decided, voting, ops = _plan(cmds, claims, now)
        if not ops:
            return decided
        got = await self.masters.vote(ops)
        at = self.clock()
        undo: list[Undo] = []  # masters taken by an acquire that is no grant
        fencing: list[tuple[int, Tally, VoteOp]] = []
        for j, i in enumerate(voting):
            cmd, tally, claim = cmds[i], self.masters.tally(got, j), claims[i]
            assert isinstance(claim, Apply)
            if cmd.action == "refresh":
                decided[i] = (rules.after_refresh_vote(cmd, tally, claim.newest_token, now), False)
            elif cmd.action == "release":
                decided[i] = rules.after_release_vote(cmd, tally, at)
            elif (out := rules.after_acquire_vote(cmd, tally, at)) is None:
                fencing.append((i, tally, ops[j]))
            else:
                decided[i] = (out, False)
                undo += [_undo(cmd, ops[j].token, tally)] if tally.took else []
        if fencing and self.fencing == "quorum":
            undo += await self._fence_quorum(cmds, fencing, decided)
        elif fencing:
            undo += await self._fence(cmds, fencing, decided)
        if undo:
            await self.masters.undo(undo)  # best effort: a silent master lets its key lapse
        return decided

    async def _fence(
        self,
        cmds: Sequence[LockCommand],
        fencing: Sequence[tuple[int, Tally, VoteOp]],
        decided: list[tuple[LockOutcome | None, bool]],
    ) -> list[Undo]:
        """Give each quorum its token; a token read too late is no grant: its keys to undo."""
        try:
            tokens = await self.ledger.fence([cmds[i] for i, _, _ in fencing])
        except BaseException:
            with contextlib.suppress(Exception):
                await self.masters.undo([_undo(cmds[i], op.token, t) for i, t, op in fencing])
            raise
        at = self.clock()
        undo = []
        for (i, tally, _), token in zip(fencing, tokens, strict=True):
            out = rules.after_fence(cmds[i], tally, token, at)
            decided[i] = (out, False)
            if out.result != "granted":
                undo.append(_undo(cmds[i], token, tally))
        return undo

    async def _fence_quorum(
        self,
        cmds: Sequence[LockCommand],
        fencing: Sequence[tuple[int, Tally, VoteOp]],
        decided: list[tuple[LockOutcome | None, bool]],
    ) -> list[Undo]:
        """Give each quorum its token: one above the counters its masters hold, written back
        to a quorum of the masters it won before it is announced; one that did not land, or
        landed after the validity, is no grant: its keys to undo."""
        given: dict[str, int] = {}  # a pair granted twice in one batch counts on
        ops = []
        for i, tally, _ in fencing:
            token = rules.next_token(tally, given.get(cmds[i].pair, 0))
            given[cmds[i].pair] = token
            ops.append(VoteOp("fence", cmds[i].pair, cmds[i].owner, token))
        try:
            got = await self.masters.fence(ops)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.masters.undo([_undo(cmds[i], op.token, t) for i, t, op in fencing])
            raise
        at = self.clock()
        undo = []
        for j, ((i, tally, _), op) in enumerate(zip(fencing, ops, strict=True)):
            out = rules.after_fence(
                cmds[i], tally, op.token, at, rules.landed_on(tally, got.votes[j])
            )
            decided[i] = (out, False)
            if out.result != "granted":
                undo.append(_undo(cmds[i], op.token, tally))
        return undo


def _plan(
    cmds: Sequence[LockCommand], claims: Sequence[Claim], now: int
) -> tuple[list[tuple[LockOutcome | None, bool]], list[int], list[VoteOp]]:
    """Outcomes known before any vote (resent, expired, superseded releases), and the ops the
    masters must vote on with the command each belongs to."""
    decided: list[tuple[LockOutcome | None, bool]] = [(None, False)] * len(cmds)
    ops: list[VoteOp] = []
    voting: list[int] = []
    for i, (cmd, claim) in enumerate(zip(cmds, claims, strict=True)):
        if isinstance(claim, Resend):
            decided[i] = (claim.outcome, False)
        elif isinstance(claim, Apply):
            first = _before_vote(cmd, claim, now)
            if first is not None:
                decided[i] = (first, False)
            else:
                voting.append(i)
                ops.append(_op(cmd, claim.newest_token))
    return decided, voting, ops


def _before_vote(cmd: LockCommand, claim: Apply, now: int) -> LockOutcome | None:
    """An outcome decided without the masters: expired, or a superseded grant's release."""
    first = rules.expired(cmd, now)
    if first is None and cmd.action == "release":
        first = rules.before_release_vote(cmd, claim.newest_token, now)
    return first


def _op(cmd: LockCommand, newest_token: int) -> VoteOp:
    """The masters' part of a command: acquire at its token bound, extend or release."""
    if cmd.action == "acquire":
        return VoteOp("acquire", cmd.pair, cmd.owner, rules.acquire_bound(newest_token))
    kind: rules.VoteKind = "extend" if cmd.action == "refresh" else "release"
    return VoteOp(kind, cmd.pair, cmd.owner, cmd.fencing_token)


def _undo(cmd: LockCommand, token: int, acquire: Tally) -> Undo:
    """A failed acquire's release, on the masters where it took the key: where its owner
    re-entered, the key is the owner's earlier grant, which lives on (freeing it there let
    another session in while that grant's stream still ran - the fault suite's drain)."""
    return VoteOp("release", cmd.pair, cmd.owner, token), acquire.took
