"""What the failover tests share: a steady stream of lock commands through a LockClient, what
each command came to, and what the new primary kept of it.

Three kinds of load, so the log can be verified whatever a failover loses:
- churners: each its own pair, acquire -> refresh -> release over and over (the grants whose
  pause the tests measure; one owner per pair, so a lost record cannot look like an overlap);
- holders: a pair each, held throughout and refreshed every HOLD_REFRESH_S;
- contenders: acquire the holders' pairs as other owners, which must never be granted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from kubescaler.adapters.lockclient import LockClient
from kubescaler.adapters.lockstate import applied_key, fence_key
from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.domain.locks import Action, LockOutcome, LockRecord, record_from_fields
from kubescaler.settings import Settings

HOLD_REFRESH_S = 0.5


@dataclass
class Sent:
    """One command: when it left, what came back (None: no answer) and when."""

    action: Action
    pair: tuple[uuid.UUID, uuid.UUID]
    owner: str
    at: float
    outcome: LockOutcome | None = None
    answered_at: float = 0.0
    failure: str = ""  # the dependency a 503 named


@dataclass
class Load:
    """The commands of a run, by request id, and what went wrong (nothing, ideally)."""

    locks: LockClient
    sent: dict[str, Sent] = field(default_factory=dict)
    running: bool = True
    wrong: list[str] = field(default_factory=list)

    async def send(
        self, action: Action, pair: tuple[uuid.UUID, uuid.UUID], owner: str, token: int = 0
    ) -> LockOutcome | None:
        rid = uuid.uuid4().hex
        cmd = self.sent[rid] = Sent(action, pair, owner, time.monotonic())
        try:
            cmd.outcome = await self.locks.send(action, *pair, owner, request_id=rid, token=token)
        except DependencyUnavailable as exc:
            cmd.failure = exc.dependency
            await asyncio.sleep(0.05)
            return None
        cmd.answered_at = time.monotonic()
        return cmd.outcome

    async def churn(self, i: int) -> None:
        pair, owner = (uuid.uuid4(), uuid.uuid4()), f"churner-{i}"
        while self.running:
            got = await self.send("acquire", pair, owner)
            if got is None or got.result != "granted":
                continue
            if (refreshed := await self.send("refresh", pair, owner, got.fencing_token)) and (
                refreshed.result != "refreshed"
            ):
                self.wrong.append(f"{owner}: refresh of its own grant said {refreshed.result}")
            await self.send("release", pair, owner, got.fencing_token)

    async def hold(self, pair: tuple[uuid.UUID, uuid.UUID], owner: str) -> None:
        token = 0
        while self.running and not token:
            got = await self.send("acquire", pair, owner)
            token = got.fencing_token if got is not None and got.result == "granted" else 0
        while self.running:
            await asyncio.sleep(HOLD_REFRESH_S)
            got = await self.send("refresh", pair, owner, token)
            if got is not None and got.result != "refreshed":
                self.wrong.append(f"{owner}: its hold was {got.result} ({got.detail})")

    async def contend(self, pairs: list[tuple[uuid.UUID, uuid.UUID]], i: int) -> None:
        while self.running:
            for pair in pairs:
                got = await self.send("acquire", pair, f"contender-{i}")
                if got is not None and got.result == "granted":
                    self.wrong.append(f"contender-{i} was granted a held pair")
                await asyncio.sleep(0.02)

    def grants(self) -> list[Sent]:
        return [
            s for s in self.sent.values() if s.outcome is not None and s.outcome.result == "granted"
        ]

    def resumed_after(self, moment: float) -> float:
        """Seconds from ``moment`` to the answer of the first grant sent after it."""
        after = [s.answered_at for s in self.grants() if s.at > moment]
        assert after, "no grant after the failover"
        return min(after) - moment

    def timeline(self, moment: float, step: float = 0.25) -> str:
        """What the commands sent in each ``step`` around ``moment`` came to, one line each."""
        rows: dict[float, Counter[str]] = {}
        for s in self.sent.values():
            at = round((s.at - moment) / step) * step
            result = s.failure or (s.outcome.result if s.outcome else "?")
            rows.setdefault(at, Counter())[f"{s.action}:{result}"] += 1
        return "\n".join(f"{at:+6.2f} s {dict(rows[at])}" for at in sorted(rows) if at > -1)

    def failures(self) -> Counter[str]:
        return Counter(s.failure for s in self.sent.values() if s.failure)


async def run_load(
    settings: Settings, churners: int = 4, holders: int = 3, contenders: int = 2
) -> tuple[Load, list[asyncio.Task[None]]]:
    """Start the load on a LockClient of its own (the caller stops it with :func:`stop`)."""
    locks = LockClient(settings, name=f"{settings.instance}-load")
    await locks.start()
    load = Load(locks)
    held = [(uuid.uuid4(), uuid.uuid4()) for _ in range(holders)]
    tasks = [asyncio.create_task(load.churn(i)) for i in range(churners)]
    tasks += [asyncio.create_task(load.hold(p, f"holder-{i}")) for i, p in enumerate(held)]
    tasks += [asyncio.create_task(load.contend(held, i)) for i in range(contenders)]
    return load, tasks


async def stop(load: Load, tasks: list[asyncio.Task[None]]) -> None:
    load.running = False
    await asyncio.gather(*tasks)
    await load.locks.stop()


async def log_records(redis: Redis, stream: str) -> list[LockRecord]:
    entries = await redis.xrange(stream)
    return [record_from_fields(fields, log_id.decode()) for log_id, fields in entries]


@dataclass
class Kept:
    """What the new primary kept of the commands the clients saw answered."""

    answered: int
    lost_log: list[str]  # answered, but no log record of them
    lost_applied: list[str]  # answered, but no applied-command record
    twice: list[str]  # logged twice (applied again after the failover)
    lost_fences: int  # pairs whose counter is below a token a client was granted
    reused_tokens: int  # (pair, token) granted twice: a counter's lost INCR handed out again

    def line(self) -> str:
        return (
            f"answered {self.answered}; lost: {len(self.lost_log)} log records, "
            f"{len(self.lost_applied)} applied-command records, {self.lost_fences} fencing "
            f"counters behind a granted token, {self.reused_tokens} tokens granted twice; "
            f"logged twice: {len(self.twice)}"
        )


async def kept(redis: Redis, settings: Settings, load: Load, records: Iterable[LockRecord]) -> Kept:
    logged = Counter(r.request_id for r in records)
    answered = {rid: s for rid, s in load.sent.items() if s.outcome is not None}
    applied = settings.lock  # the applied-command records live for applied_ttl_ms (10 min)
    assert applied.applied_ttl_ms > 60_000
    pipe = redis.pipeline(transaction=False)
    for rid in answered:
        pipe.exists(applied_key(rid))
    exists = await pipe.execute()
    top: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    granted: Counter[tuple[tuple[uuid.UUID, uuid.UUID], int]] = Counter()
    for s in load.grants():
        assert s.outcome is not None
        top[s.pair] = max(top.get(s.pair, 0), s.outcome.fencing_token)
        granted[s.pair, s.outcome.fencing_token] += 1
    pipe = redis.pipeline(transaction=False)
    for user, profile in top:
        pipe.get(fence_key(user, profile))
    fences = [int(v or 0) for v in await pipe.execute()]
    return Kept(
        answered=len(answered),
        lost_log=[rid for rid in answered if rid not in logged],
        lost_applied=[rid for rid, ok in zip(answered, exists, strict=True) if not ok],
        twice=[rid for rid, n in logged.items() if n > 1],
        lost_fences=sum(f < t for f, t in zip(fences, top.values(), strict=True)),
        reused_tokens=sum(n > 1 for n in granted.values()),
    )
