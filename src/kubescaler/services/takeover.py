"""Keepers cover each other: the heartbeat, and the takeover of a gone keeper's commands.

Beside its broker every lock-keeper runs :class:`Takeover`: one loop renews its heartbeat every
interval and keeps its :class:`~kubescaler.domain.takeover.Pulse`; another, every interval,
looks at the group (the :class:`Roster` port, ``adapters/keepers.py``), asks
``domain/takeover.py`` what it sees and acts: it takes (XCLAIM) the pending commands of a
silent or dead keeper, releases a dead one's in-flight claims on them, and hands them to the
keeper's own batch handler at once; it retires dead keepers that hold nothing. A keeper that
starts under the name of a dead one first takes over what that one left (:meth:`inherit`).

:class:`Fenced` wraps the keeper's ledger so that a batch is not committed when the keeper may
have been found dead while applying it (``domain/takeover.may_commit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Protocol

import msgspec

from kubescaler.domain import takeover as rules
from kubescaler.domain.lockrules import Claim
from kubescaler.domain.locks import Delivery, LockCommand, LockOutcome
from kubescaler.domain.takeover import Mark, Peer, Pulse, Retire, Step, Take
from kubescaler.services.lockkeeping import Ledger

log = logging.getLogger(__name__)


class Roster(Protocol):
    """The group as a survivor sees it, and the takeover's scripts (``adapters/keepers``)."""

    async def look(self) -> tuple[list[Peer], dict[str, int]]: ...

    async def connected(self, registered: Mapping[str, int]) -> set[str]: ...

    async def take(
        self, victim: str, taker: str, count: int, start: str = "-"
    ) -> list[Delivery]: ...

    async def release(self, victim: str, client_id: int, request_ids: Sequence[str]) -> int: ...

    async def retire(self, victim: str, client_id: int) -> bool: ...

    async def leave(self, me: str) -> bool: ...


class Beat(Protocol):
    """This keeper's heartbeat over its own connection (``adapters/keepers.Heartbeat``)."""

    async def open(self) -> int: ...

    async def renew(self) -> None: ...

    async def close(self) -> None: ...


Handler = Callable[[Sequence[Delivery]], Awaitable[object]]
#: (verdict, commands taken, in-flight claims released): for the keeper's metrics.
Report = Callable[[str, int, int], None]


def monotonic_ms() -> float:
    return time.monotonic() * 1000


class Takeover:
    def __init__(
        self,
        me: str,
        roster: Roster,
        beat: Beat,
        pulse: Pulse,
        handle: Handler,
        *,
        report: Report | None = None,
        clock: Callable[[], float] = monotonic_ms,
        batch: int = 256,
    ) -> None:
        self.me = me
        self.roster = roster
        self.beat = beat
        self.pulse = pulse
        self.handle = handle
        self.report = report or (lambda *_: None)
        self.clock = clock
        self.batch = batch
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def interval_s(self) -> float:
        return self.pulse.interval_ms / 1000

    async def renew(self) -> None:
        """One renewal of the heartbeat, kept in the pulse (a failure breaks the run)."""
        sent = self.clock()
        try:
            await self.beat.renew()
        except Exception as exc:
            self.pulse.failed()
            log.debug("heartbeat of %s failed: %r", self.me, exc)
        else:
            self.pulse.renewed(sent, self.clock())

    async def tick(self) -> list[Step]:
        """One look at the group and what came of it (nothing while this keeper's own
        heartbeat has not run a whole TTL without a gap)."""
        if not self.pulse.healthy(self.clock()):
            return []
        peers, conns = await self.roster.look()
        peers = await self._with_connections(peers, conns)
        steps = rules.plan(self.me, peers, self.pulse.healthy(self.clock()))
        for step in steps:
            if isinstance(step, Take):
                await self._take(step.victim, conns[step.victim], step.release)
            elif isinstance(step, Retire) and await self.roster.retire(
                step.victim, conns[step.victim]
            ):
                log.info("lock-keeper %s is gone; removed it from the group", step.victim)
        return steps

    async def _with_connections(self, peers: list[Peer], conns: Mapping[str, int]) -> list[Peer]:
        """The peers, each whose heartbeat lapsed told whether its connection is open."""
        unsure = {
            p.name: conns[p.name]
            for p in peers
            if rules.needs_connection_check(p) and p.name != self.me
        }
        if not unsure:
            return peers
        connected = await self.roster.connected(unsure)
        return [msgspec.structs.replace(p, connected=p.name in connected) for p in peers]

    async def _take(self, victim: str, client_id: int, release: bool) -> int:
        """Move ``victim``'s pending commands here, batch by batch in id order (what stays
        pending here, busy, is not taken twice: the victim may be this keeper's own name),
        release the in-flight claims on them if it is dead, and apply them; how many."""
        taken, start = 0, "-"
        while batch := await self.roster.take(victim, self.me, self.batch, start):
            last = batch[-1].receipt
            start = "(" + (last.decode() if isinstance(last, bytes) else last)
            released = 0
            if release:
                ids = [d.cmd.request_id for d in batch if d.cmd is not None]
                released = max(await self.roster.release(victim, client_id, ids), 0)
            verdict = "dead" if release else "silent"
            log.warning(
                "lock-keeper %s is %s: took over %d command(s), released %d claim(s)",
                victim,
                verdict,
                len(batch),
                released,
            )
            self.report(verdict, len(batch), released)
            taken += len(batch)
            await self.handle(batch)
            if len(batch) < self.batch:
                break
        return taken

    async def inherit(self) -> int:
        """At start, before the first renewal: take over what an earlier process under this
        keeper's name left pending, once its heartbeat lapsed (at most a TTL and an interval
        from now) and its connection is closed; how many commands were taken."""
        earlier, conns = await self._earlier()
        if earlier is None or await self.beat.open() == conns[self.me]:
            return 0
        deadline = self.clock() + self.pulse.ttl_ms + self.pulse.interval_ms
        while earlier.beating and self.clock() < deadline:
            await asyncio.sleep(self.interval_s / 2)
            earlier, conns = await self._earlier()
            if earlier is None:  # retired meanwhile: nothing left under this name
                return 0
        connected = self.me in await self.roster.connected({self.me: conns[self.me]})
        if not rules.inherits(connected, earlier.beating, earlier.pending):
            return 0
        return await self._take(self.me, conns[self.me], release=True)

    async def _earlier(self) -> tuple[Peer | None, dict[str, int]]:
        """This keeper's name as registered by an earlier process, if it is."""
        peers, conns = await self.roster.look()
        earlier = next((p for p in peers if p.name == self.me and p.registered), None)
        return earlier, conns

    async def _beating(self) -> None:
        while not self._stopping:
            started = self.clock()
            await self.renew()
            await asyncio.sleep(max(0.0, self.pulse.interval_ms - (self.clock() - started)) / 1000)

    async def _watching(self) -> None:
        while not self._stopping:
            try:
                await self.tick()
            except Exception as exc:  # Redis down or stalled: the next look tries again
                log.debug("lock-keeper %s could not look at the group: %r", self.me, exc)
            await asyncio.sleep(self.interval_s)

    async def start(self) -> None:
        """Inherit what this name left, renew once, and run both loops."""
        try:
            await self.inherit()
        except Exception as exc:  # Redis not there yet: the idle-time claim covers it
            log.warning("lock-keeper %s could not inherit its name's commands: %r", self.me, exc)
        await self.renew()
        self._stopping = False
        self._tasks = [asyncio.create_task(self._beating()), asyncio.create_task(self._watching())]

    async def stop(self) -> None:
        """Stop both loops; leave the group if nothing is pending here (else the heartbeat
        lapses and a survivor takes it over).

        Cancelled again until they end: on Python 3.11 a cancellation that meets an expiring
        ``asyncio.timeout`` (a Redis call's) comes out as TimeoutError, which a loop survives.
        """
        self._stopping = True
        while pending := [t for t in self._tasks if not t.done()]:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.1)
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.roster.leave(self.me)
        await self.beat.close()


class HeartbeatLost(Exception):
    """A batch's commit refused: its keeper may have been found dead while applying it."""


_CLAIMED_AT: ContextVar[Mark | None] = ContextVar("claimed_at", default=None)


class Fenced:
    """The ledger, its commit refused when :func:`~kubescaler.domain.takeover.may_commit`
    says a survivor may have released the batch's claims. The pulse's mark is taken at the
    claim, in the batch's own task (a context variable), so batches in flight at once on one
    keeper each keep their own."""

    def __init__(self, ledger: Ledger, pulse: Pulse, clock: Callable[[], float] = monotonic_ms):
        self.ledger = ledger
        self.pulse = pulse
        self.clock = clock

    async def claim(self, cmds: Sequence[LockCommand]) -> list[Claim]:
        _CLAIMED_AT.set(self.pulse.mark())
        return await self.ledger.claim(cmds)

    async def unclaim(self, cmds: Sequence[LockCommand]) -> None:
        await self.ledger.unclaim(cmds)

    async def fence(self, cmds: Sequence[LockCommand]) -> list[int]:
        return await self.ledger.fence(cmds)

    async def commit(
        self,
        applied: Sequence[tuple[LockOutcome, bool]],
        acks: Sequence[bytes | str],
        replies: Mapping[str, Sequence[LockOutcome]],
    ) -> None:
        mark = _CLAIMED_AT.get()
        if mark is not None and not rules.may_commit(mark, self.pulse, self.clock()):
            raise HeartbeatLost(
                "the heartbeat connection was replaced after a silence while this batch was "
                "applied: not committed (its claims may have been released)"
            )
        await self.ledger.commit(applied, acks, replies)
