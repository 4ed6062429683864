"""What decides a lock: every rule of the lock core, as pure functions over plain values.

The lock-keeper's use case (``services/lockkeeping.py``) gathers facts with I/O — the claim on
a command's request id and the pair's newest fencing token, the Redlock masters' votes, the
fencing counter after a grant — and asks this module what they mean. Nothing here reads a
clock or a socket: every time is an argument, so each branch is a unit test.

The rules, in the order a command meets them:

1. **Redelivery** (:func:`on_claim`): a request id already applied is answered again with its
   stored outcome, never applied twice; one being applied by another worker is left pending.
2. **Deadline** (:func:`expired`): a command taken after its deadline is answered
   ``expired`` and not applied.
3. **Supersession** (:func:`superseded`): a refresh or release that speaks for a grant older
   than the pair's newest fencing token is ``lost`` / ``released`` "not held".
4. **The vote** (:func:`tally`, :func:`quorum`, :func:`validity_ms`): Redlock over N masters
   is ``ok`` on N//2+1 wins, ``held`` when refusals by another owner make that impossible, else
   ``unavailable``; a hold is valid for TTL - elapsed - drift.
5. **Fencing order** (:func:`next_token`, :func:`fenced`, :func:`after_fence`): a grant's
   token is one more than the highest counter the masters of its vote hold for the pair, and
   is written back to a quorum of the masters it won before it is announced, inside the
   lock's validity; any later grant's vote meets that quorum, so tokens increase in grant
   order whichever single master is lost or wiped (docs/locks.md argues it). The older mode,
   ``fencing = "stream"`` (one INCR on the stream Redis; :func:`acquire_bound`), is kept for
   the benchmark that compares the two.
6. **A master that came back empty** abstains until it has the counters of every other master
   and a lock's lifetime has passed since it came back (``domain/recovery.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from kubescaler.domain.locks import LockCommand, LockOutcome, outcome, superseded

Status = Literal["ok", "held", "unavailable"]
VoteKind = Literal["acquire", "extend", "release", "fence"]
#: Where fencing tokens come from: a quorum of the Redlock masters, or the stream Redis.
Fencing = Literal["quorum", "stream"]

#: The separator between the owner and its fencing-token bound in a Redlock value.
VALUE_SEPARATOR = "#"


def quorum(masters: int) -> int:
    """Votes Redlock needs out of ``masters``: a strict majority."""
    return masters // 2 + 1


def status(wins: int, refusals: int, masters: int) -> Status:
    """ok on a quorum of wins; held when refusals alone rule a quorum out; else unavailable.

    Silent masters (down, slow) count neither way: a refusal is an answer that another owner
    holds the key, so enough of them mean "held" even if every silent master would agree.
    """
    if wins >= quorum(masters):
        return "ok"
    if refusals > masters - quorum(masters):
        return "held"
    return "unavailable"


def validity_ms(ttl_ms: int, elapsed_ms: int, drift_factor: float) -> int:
    """How long a quorum taken ``elapsed_ms`` ago stays safe: TTL - elapsed - drift - 2 ms."""
    return ttl_ms - elapsed_ms - (int(ttl_ms * drift_factor) + 2)


def lock_value(owner: str, token: int) -> str:
    """The value stored on each Redlock master: the owner and its fencing-token bound."""
    return f"{owner}{VALUE_SEPARATOR}{token}"


def parse_lock_value(value: str) -> tuple[str, int]:
    """(owner, token bound) of a stored value; a value without a bound reads as bound 0."""
    owner, sep, token = value.rpartition(VALUE_SEPARATOR)
    if sep and token.isdigit():
        return owner, int(token)
    return value, 0


class Vote(msgspec.Struct, frozen=True, kw_only=True):
    """One master's answer to one operation: won, refused (another owner holds it) or silent.

    A refusal of an acquire names the ``holder`` and its remaining ``ttl_ms``; ``error`` says
    why a master was silent (down, slow, or recovering: it came back empty). ``counter`` is
    the master's fencing counter for the pair after the operation.
    """

    answer: Literal["won", "refused", "silent"]
    holder: str = ""
    ttl_ms: int = 0
    error: str = ""
    counter: int = 0
    #: an acquire won on a key its owner already held there (a session re-entering)
    reentered: bool = False


class VoteOp(msgspec.Struct, frozen=True):
    """One operation on one key: acquire with a token bound, extend or release with a token,
    fence: raise the pair's counter to ``token`` (won only where it was below it)."""

    kind: VoteKind
    key: str
    owner: str
    token: int = 0


#: An op and the masters (by index) it goes to: how a failed acquire is undone.
Undo = tuple[VoteOp, tuple[int, ...]]


class Round(msgspec.Struct, frozen=True):
    """The votes of one round: ``votes[op][master]``, taken from ``started_ms`` (epoch) for
    ``elapsed_ms``."""

    votes: list[list[Vote]]
    started_ms: int
    elapsed_ms: int


class Tally(msgspec.Struct, frozen=True, kw_only=True):
    """The votes of every master on one operation, what they decide, and for how long.

    ``valid_ms`` counts from ``started_ms`` (epoch ms, when the vote began): the hold a
    quorum gives is safe until ``expires_at_ms``.
    """

    status: Status
    masters: int
    wins: int
    refusals: int
    started_ms: int = 0
    valid_ms: int = 0
    holder: str = ""
    holder_ttl_ms: int = 0
    error: str = ""
    #: the highest fencing counter any answering master holds for the pair
    newest: int = 0
    #: which masters won (by index): a grant's token must reach a quorum of these
    won: tuple[int, ...] = ()
    #: which of them an acquire took free (not its owner's key already): the only masters a
    #: failed acquire may free - elsewhere the key still carries the owner's earlier grant
    took: tuple[int, ...] = ()

    @property
    def answered(self) -> int:
        return self.wins + self.refusals

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def expires_at_ms(self) -> int:
        return self.started_ms + self.valid_ms


def tally(
    votes: Sequence[Vote],
    started_ms: int = 0,
    elapsed_ms: int = 0,
    ttl_ms: int = 0,
    drift_factor: float = 0.0,
) -> Tally:
    """Count one operation's votes, taken from ``started_ms`` for ``elapsed_ms``.

    The holder reported is the refusing one with the longest TTL; the first silent master's
    error says why it was silent.
    """
    won = tuple(i for i, v in enumerate(votes) if v.answer == "won")
    wins = len(won)
    refused = [v for v in votes if v.answer == "refused"]
    longest = max(refused, key=lambda v: v.ttl_ms, default=None)
    error = next((v.error for v in votes if v.answer == "silent"), "")
    return Tally(
        status=status(wins, len(refused), len(votes)),
        masters=len(votes),
        wins=wins,
        refusals=len(refused),
        started_ms=started_ms,
        valid_ms=validity_ms(ttl_ms, elapsed_ms, drift_factor),
        holder=longest.holder if longest else "",
        holder_ttl_ms=max(longest.ttl_ms, 0) if longest else 0,
        error=error,
        newest=max((v.counter for v in votes if v.answer != "silent"), default=0),
        won=won,
        took=tuple(i for i in won if not votes[i].reentered),
    )


# ------------------------------------------------------------------ per-command decisions


class Apply(msgspec.Struct, frozen=True):
    """The claim is this worker's: apply the command. ``newest_token`` is the pair's counter."""

    newest_token: int


class Resend(msgspec.Struct, frozen=True):
    """Already applied: answer with the stored outcome again, log nothing."""

    outcome: LockOutcome


class Busy(msgspec.Struct, frozen=True):
    """Another worker is applying it now: leave it pending (claimed again later if it dies)."""


Claim = Apply | Resend | Busy


def on_claim(took: bool, stored: LockOutcome | None, newest_token: int) -> Claim:
    """What a claim on a request id means: ``took`` = the in-flight marker was set by us;
    otherwise ``stored`` is the applied outcome, or None while another worker applies it."""
    if took:
        return Apply(newest_token)
    if stored is not None:
        return Resend(stored)
    return Busy()


def expired(cmd: LockCommand, now_ms: int) -> LockOutcome | None:
    """``expired`` for a command taken after its deadline: answered, never applied."""
    if now_ms > cmd.deadline_ms:
        return outcome(cmd, "expired", now_ms, detail=f"deadline {cmd.deadline_ms} passed")
    return None


def acquire_bound(newest_token: int) -> int:
    """The lowest token an acquire applied now can be granted (the counter only grows).

    Stored with the owner on the masters, it makes any older grant of the same session unable
    to release the key: its token is below the bound.
    """
    return newest_token + 1


def unavailable(cmd: LockCommand, at_ms: int, got: Tally, why: str = "") -> LockOutcome:
    """``quorum_unavailable``: too few masters answered to decide (not "denied")."""
    detail = why or (
        f"lock quorum unavailable: {got.answered}/{got.masters} masters answered, "
        f"{quorum(got.masters)} needed ({got.error})"
    )
    return outcome(cmd, "quorum_unavailable", at_ms, detail=detail)


def after_acquire_vote(cmd: LockCommand, got: Tally, at_ms: int) -> LockOutcome | None:
    """``denied`` (another owner holds it), ``quorum_unavailable``, or None: fence it next.

    A quorum whose validity is already used up is no grant. Whatever is not None here leaves
    the masters this acquire took (``Tally.took``) to be released - not those where its owner
    re-entered its own key, which still carries the owner's earlier, live grant.
    """
    if got.status == "held":
        return outcome(
            cmd, "denied", at_ms, expires_at_ms=at_ms + got.holder_ttl_ms, holder=got.holder
        )
    if not got.ok:
        return unavailable(cmd, at_ms, got)
    if got.valid_ms <= 0:
        return unavailable(cmd, at_ms, got, "lock validity elapsed during the vote")
    return None


def next_token(got: Tally, after: int = 0) -> int:
    """The token of a grant the masters voted ``got`` (quorum fencing): one above every
    counter they hold for the pair, and above ``after``, a token this batch already gave it."""
    return max(got.newest, after) + 1


def landed_on(acquire: Tally, fence_votes: Sequence[Vote]) -> int:
    """How many of the masters the acquire won took the token (its write quorum, if enough).

    Counted among the acquire's winners only: those hold the grant's key, so a release by an
    older grant of the same session is refused wherever the newer token landed (the token is
    above it), and that is still a quorum of the key.
    """
    return sum(fence_votes[i].answer == "won" for i in acquire.won)


def fenced(acquire: Tally, fence_votes: Sequence[Vote]) -> bool:
    """Whether a token reached a quorum of the masters the acquire won."""
    return landed_on(acquire, fence_votes) >= quorum(acquire.masters)


def after_fence(
    cmd: LockCommand, got: Tally, token: int, now_ms: int, landed: int | None = None
) -> LockOutcome:
    """``granted`` with ``token`` when it was fixed inside the validity, else no grant: read
    from the stream Redis's counter (``landed`` None), or written back to ``landed`` of the
    masters the acquire won, which must be a quorum of all.

    A later grant can only reach a quorum once this one's validity is over; a token fixed
    before that point is below any later grant's. One fixed after it could be above a later
    grant's, so it is dropped (and the masters released).
    """
    if landed is not None and landed < quorum(got.masters):
        return unavailable(cmd, now_ms, got, "the fencing token reached too few masters")
    if now_ms >= got.expires_at_ms:
        return unavailable(cmd, now_ms, got, "lock validity elapsed before fencing")
    return outcome(
        cmd,
        "granted",
        now_ms,
        fencing_token=token,
        expires_at_ms=got.expires_at_ms,
        fenced_on=landed or 0,
    )


def after_refresh_vote(cmd: LockCommand, got: Tally, newest_token: int, at_ms: int) -> LockOutcome:
    """``refreshed``, ``lost`` (not the owner; or superseded, naming the newer token) or
    ``quorum_unavailable``.

    ``newest_token`` is the highest the pair's counters were seen: on the stream Redis (read
    before the vote, and ``at_ms`` taken before that read, so a grant this refresh did not see
    is logged after it) or on the masters that answered (their counter above the token is why
    they refused). Superseded comes first: a quorum fencing token landed on a quorum refuses
    the older grant's extend, which is not "another owner".
    """
    newest_token = max(newest_token, got.newest)
    if superseded(cmd.fencing_token, newest_token) and not got.ok:
        return _superseded(cmd, at_ms, newest_token)
    if got.status == "held":
        return outcome(cmd, "lost", at_ms, detail="not the owner any more")
    if not got.ok:
        return unavailable(cmd, at_ms, got)
    if got.valid_ms <= 0:
        return unavailable(cmd, at_ms, got, "lock validity elapsed during the vote")
    if superseded(cmd.fencing_token, newest_token):
        # The extend kept the key of the same session, whose newer grant holds it.
        return _superseded(cmd, at_ms, newest_token)
    return outcome(
        cmd,
        "refreshed",
        at_ms,
        fencing_token=max(newest_token, cmd.fencing_token),
        expires_at_ms=got.expires_at_ms,
    )


def before_release_vote(cmd: LockCommand, newest_token: int, at_ms: int) -> LockOutcome | None:
    """``released`` "not held" for a superseded grant (the lock is the newer one's), else None:
    ask the masters, which free the key only for this owner at or above its token bound."""
    if superseded(cmd.fencing_token, newest_token):
        return outcome(
            cmd,
            "released",
            at_ms,
            fencing_token=cmd.fencing_token,
            superseded_by=newest_token,
            detail=f"not held: superseded by fencing token {newest_token}",
        )
    return None


def after_release_vote(cmd: LockCommand, got: Tally, at_ms: int) -> tuple[LockOutcome, bool]:
    """``released`` (and whether a key was freed) once a quorum answered; else unavailable.
    A release the masters refused because a newer token landed there says so."""
    if got.answered < quorum(got.masters):
        return unavailable(cmd, at_ms, got), False
    if not got.wins and superseded(cmd.fencing_token, got.newest):
        return before_release_vote(cmd, got.newest, at_ms) or outcome(cmd, "released", at_ms), False
    freed = got.wins > 0
    return outcome(cmd, "released", at_ms, detail="" if freed else "not held"), freed


def replies(outcomes: Sequence[tuple[str, LockOutcome]]) -> dict[str, list[LockOutcome]]:
    """Outcomes grouped by reply channel, in order; commands without one get no answer."""
    grouped: dict[str, list[LockOutcome]] = {}
    for channel, out in outcomes:
        if channel:
            grouped.setdefault(channel, []).append(out)
    return grouped


def _superseded(cmd: LockCommand, at_ms: int, newest_token: int) -> LockOutcome:
    """``lost``: a newer grant of the pair (``newest_token``) replaced the one ``cmd`` holds."""
    return outcome(
        cmd,
        "lost",
        at_ms,
        fencing_token=cmd.fencing_token,
        superseded_by=newest_token,
        detail=f"superseded by fencing token {newest_token}",
    )
