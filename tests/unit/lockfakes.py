"""In-memory stand-ins for the lock core's ports: Redlock masters, the ledger, a clock.

They keep the semantics the real adapters implement in Lua (``adapters/redlock.py``,
``adapters/lockledger.py``) so the use case can be driven through every branch without a
server; the integration tests hold the real adapters to the same behaviour.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from kubescaler.domain import lockrules as rules
from kubescaler.domain.lockrules import Claim, Round, Tally, Undo, Vote, VoteOp
from kubescaler.domain.locks import Action, LockCommand, LockOutcome

TTL = 60_000
DRIFT = 0.01


@dataclass
class Clock:
    """Epoch milliseconds that move only when a test moves them."""

    now: int = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


@dataclass
class Held:
    owner: str
    bound: int
    until: int


@dataclass
class FakeMasters:
    """N Redlock masters as dicts, mirroring redlock.py's script: lock keys, fencing counters,
    the ready marker; ``down`` ones are silent, ``empty`` ones (came back without their data)
    abstain, ``elapsed_ms`` is each vote's duration (the clock moves by it), ``before_vote``
    runs before a round is applied."""

    clock: Clock
    n: int = 3
    ttl_ms: int = TTL
    elapsed_ms: int = 1
    down: set[int] = field(default_factory=set)
    empty: set[int] = field(default_factory=set)
    keys: list[dict[str, Held]] = field(default_factory=list)
    counters: list[dict[str, int]] = field(default_factory=list)
    rounds: list[list[VoteOp]] = field(default_factory=list)
    before_vote: Callable[[Sequence[VoteOp]], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        self.keys = [{} for _ in range(self.n)]
        self.counters = [{} for _ in range(self.n)]

    def wipe(self, m: int) -> None:
        """Master ``m`` comes back with no data (it abstains until caught up)."""
        self.keys[m], self.counters[m] = {}, {}
        self.empty.add(m)

    def _live(self, m: int, key: str) -> Held | None:
        held = self.keys[m].get(key)
        if held is not None and held.until <= self.clock():
            del self.keys[m][key]
            return None
        return held

    def _apply(self, m: int, op: VoteOp) -> Vote:  # noqa: PLR0911 - the script's branches
        counter = self.counters[m].get(op.key, 0)
        if op.kind == "fence":
            if counter < op.token:
                self.counters[m][op.key] = op.token
                return Vote(answer="won", counter=op.token)
            return Vote(answer="refused", counter=counter)
        held = self._live(m, op.key)
        if op.kind == "acquire":
            if held is not None and held.owner != op.owner:
                ttl = held.until - self.clock()
                return Vote(answer="refused", holder=held.owner, ttl_ms=ttl, counter=counter)
            bound = max(op.token, held.bound if held else 0)
            self.keys[m][op.key] = Held(op.owner, bound, self.clock() + self.ttl_ms)
            return Vote(answer="won", counter=counter, reentered=held is not None)
        if held is None or held.owner != op.owner or 0 < op.token < counter:
            return Vote(answer="refused", counter=counter)
        if op.kind == "extend":
            held.bound = max(held.bound, op.token)
            held.until = self.clock() + self.ttl_ms
            return Vote(answer="won", counter=counter)
        if 0 < op.token < held.bound:
            return Vote(answer="refused", counter=counter)
        del self.keys[m][op.key]
        return Vote(answer="won", counter=counter)

    def _answer(self, m: int, op: VoteOp) -> Vote:
        if m in self.down:
            return Vote(answer="silent", error="ConnectionError: down")
        if m in self.empty:
            return Vote(answer="silent", error="Recovering: it came back empty")
        return self._apply(m, op)

    async def vote(self, ops: Sequence[VoteOp]) -> Round:
        if self.before_vote is not None:
            hook, self.before_vote = self.before_vote, None
            await hook(ops)
        self.rounds.append(list(ops))
        started = self.clock()
        votes = [[self._answer(m, op) for m in range(self.n)] for op in ops]
        self.clock.now += self.elapsed_ms
        return Round(votes, started, self.elapsed_ms)

    async def fence(self, ops: Sequence[VoteOp]) -> Round:
        return await self.vote(ops)

    async def undo(self, ops: Sequence[Undo]) -> None:
        self.rounds.append([op for op, _ in ops])
        for op, on in ops:
            for m in on:
                if m not in self.down and m not in self.empty:
                    self._apply(m, op)

    def tally(self, got: Round, i: int) -> Tally:
        return rules.tally(got.votes[i], got.started_ms, got.elapsed_ms, self.ttl_ms, DRIFT)

    def holders(self, key: str) -> list[str | None]:
        """Who holds ``key`` on each master now."""
        return [(h.owner if (h := self._live(m, key)) else None) for m in range(self.n)]


@dataclass
class FakeLedger:
    """Claims, fencing counters, the log, the launched state, acks and replies, in memory.
    ``fail`` names a method that raises once; ``fence_ms`` moves the clock during a fence."""

    clock: Clock
    applied: dict[str, LockOutcome | None] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    log: list[LockOutcome] = field(default_factory=list)
    launched: dict[str, str] = field(default_factory=dict)
    acked: list[bytes | str] = field(default_factory=list)
    published: list[tuple[str, list[LockOutcome]]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    fail: str = ""
    fence_ms: int = 0

    def _maybe_fail(self, name: str) -> None:
        self.calls.append(name)
        if self.fail == name:
            self.fail = ""
            raise ConnectionError(f"{name} failed")

    async def claim(self, cmds: Sequence[LockCommand]) -> list[Claim]:
        self._maybe_fail("claim")
        out: list[Claim] = []
        for c in cmds:
            if c.request_id in self.applied:
                out.append(rules.on_claim(False, self.applied[c.request_id], 0))
            else:
                self.applied[c.request_id] = None
                out.append(rules.on_claim(True, None, self.counters.get(c.pair, 0)))
        return out

    async def unclaim(self, cmds: Sequence[LockCommand]) -> None:
        self.calls.append("unclaim")
        for c in cmds:
            self.applied.pop(c.request_id, None)

    async def fence(self, cmds: Sequence[LockCommand]) -> list[int]:
        self._maybe_fail("fence")
        self.clock.now += self.fence_ms
        tokens = []
        for c in cmds:
            self.counters[c.pair] = self.counters.get(c.pair, 0) + 1
            tokens.append(self.counters[c.pair])
        return tokens

    async def commit(
        self,
        applied: Sequence[tuple[LockOutcome, bool]],
        acks: Sequence[bytes | str],
        replies: Mapping[str, Sequence[LockOutcome]],
    ) -> None:
        self._maybe_fail("commit")
        for out, freed in applied:
            self.applied[out.request_id] = out
            self.log.append(out)
            if out.result in ("granted", "refreshed"):
                self.launched[out.pair] = out.owner
            elif freed and self.launched.get(out.pair) == out.owner:
                del self.launched[out.pair]
        self.acked += list(acks)
        self.published += [(ch, list(outs)) for ch, outs in replies.items()]

    def answers(self) -> list[LockOutcome]:
        return [out for _, outs in self.published for out in outs]


USER, PROFILE = uuid.UUID(int=1), uuid.UUID(int=2)
_ids = iter(range(1, 1_000_000))


def command(
    action: Action,
    owner: str,
    token: int = 0,
    *,
    clock: Clock,
    user: uuid.UUID = USER,
    profile: uuid.UUID = PROFILE,
    request_id: str | None = None,
    deadline_in_ms: int = 3000,
    reply_to: str = "reply:test",
) -> LockCommand:
    return LockCommand(
        action=action,
        user_id=user,
        profile_id=profile,
        owner=owner,
        request_id=request_id or f"r{next(_ids)}",
        deadline_ms=clock() + deadline_in_ms,
        reply_to=reply_to,
        fencing_token=token,
    )
