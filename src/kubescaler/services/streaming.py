"""Exclusive streams: open one for a bound (user, profile) pair under its lock, feed it, end it.

One :class:`StreamHub` per stream process holds what its streams share: the ports to base
(:class:`Bindings`) and to the lock (:class:`Locks`), the drain switch, the one producer and
the one refresher of every stream. Each client's stream is a
``services.stream_session.StreamSession``, which queues or drops its events and ends with a
``lock-lost``, ``reconnect`` or ``superseded`` event when it must. What a refresh outcome
means is ``domain.stream.after_refresh``'s to say.

Producing: the hub's one producer task gives the streams their events in turns, one group of
streams per tick, rather than one task and one timer per stream; streams fill a group (up to
``GROUP_STREAMS``) before the next is used, and the producer sleeps through empty groups and
while no stream is open, because each wake of the process costs more than serving a hundred
streams in it.

Refreshing: the hub, not each stream, refreshes. Every ``tick`` it sends the refresh of every
stream whose turn has come, all at once (the lock client publishes them in one pipeline and
the keeper applies them in batches), so 10,000 streams cost one task and a few round trips per
tick instead of 10,000 sleeping tasks each with its own round trips.

One live stream per pair: when a pair is granted again (the same session re-entering, or after
a hand-over) the hub ends its own older streams of that pair at once, and learns of grants made
elsewhere from the lock event log (:meth:`StreamHub.follow`), so an older stream on any
instance ends within a moment, not at its next refresh.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterable, Callable, Coroutine
from typing import Any, Protocol

from kubescaler.domain.errors import Conflict, DependencyUnavailable, Forbidden, KubescalerError
from kubescaler.domain.locks import LockOutcome, now_ms
from kubescaler.domain.models import Binding
from kubescaler.domain.sse import Reconnect
from kubescaler.domain.stream import Payload
from kubescaler.services import stream_metrics as m
from kubescaler.services.stream_session import StreamSession
from kubescaler.settings import Settings

log = logging.getLogger(__name__)

#: The most time between two refresh rounds of the hub (a stream's refresh is at most this
#: late), and the least.
TICK_MAX_S = 1.0
TICK_MIN_S = 0.05
#: Streams produce in turns: at most this many groups per event interval, each at least
#: PRODUCE_TICK_S apart, so one tick of the hub's producer serves a group of streams. A group
#: takes up to GROUP_STREAMS streams before the next one is used (more when all are full).
PRODUCE_GROUPS = 10
PRODUCE_TICK_S = 0.01
GROUP_STREAMS = 128
#: The longest wait before a failed refresh is tried again.
RETRY_MAX_MS = 5000


class Bindings(Protocol):
    """Base: whether a user is bound to a profile."""

    async def binding(self, user_id: uuid.UUID, profile_id: uuid.UUID) -> Binding: ...


class Locks(Protocol):
    """The lock's requester side (``adapters.lockclient.LockClient``)."""

    async def acquire(
        self, user_id: uuid.UUID, profile_id: uuid.UUID, owner: str
    ) -> LockOutcome: ...

    async def refresh(
        self,
        user_id: uuid.UUID,
        profile_id: uuid.UUID,
        owner: str,
        token: int = 0,
        timeout_ms: int | None = None,
    ) -> LockOutcome: ...

    async def release(
        self, user_id: uuid.UUID, profile_id: uuid.UUID, owner: str, token: int = 0
    ) -> LockOutcome: ...


def pick_group(sizes: list[int], cap: int) -> int:
    """The group a new stream joins, given the groups' sizes: the fullest one still under
    ``cap`` (so few groups, and few producer wakes, serve few streams), else the smallest."""
    under = [i for i, n in enumerate(sizes) if n < cap]
    if under:
        return max(under, key=lambda i: (sizes[i], -i))
    return min(range(len(sizes)), key=lambda i: (sizes[i], i))


def _logged(rounds: set[asyncio.Task[int]]) -> Callable[[asyncio.Task[int]], None]:
    """A done-callback that forgets a finished refresh round and logs how it failed, if it did."""

    def done(task: asyncio.Task[int]) -> None:
        rounds.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("refresh round failed", exc_info=task.exception())

    return done


class Draining(KubescalerError):
    """This instance is shutting down: reconnect (the entry point picks another instance)."""

    status = 503


class StreamHub:
    def __init__(
        self,
        settings: Settings,
        base: Bindings,
        locks: Locks,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.settings = settings
        self.instance = settings.instance or f"{settings.host}:{settings.stream_port}"
        self.base = base
        self.locks = locks
        self.clock = clock
        self.payload = Payload(settings.stream.event_bytes)
        self.sessions: set[StreamSession] = set()
        self.by_pair: dict[str, set[StreamSession]] = {}
        self.draining = False
        self.interval_ms = settings.lock.refresh_interval_ms
        self.tick_s = max(TICK_MIN_S, min(TICK_MAX_S, self.interval_ms / 4000))
        #: After a refresh that got no answer, the next try comes this much sooner than the
        #: interval (a stalled keeper or Redis is waited out, not given up on after two tries).
        #: A refresh waits this long for its answer (no one is kept waiting: the hold is the
        #: TTL), far longer than an open does, so a loaded keeper is not taken for a lost lock.
        self.refresh_timeout_ms = max(
            settings.lock.request_timeout_ms, min(self.interval_ms, settings.lock.ttl_ms // 3)
        )
        self.refresh_retry_ms = max(
            int(self.tick_s * 1000), min(self.interval_ms // 4, RETRY_MAX_MS)
        )
        rate = settings.stream.events_per_s
        self.event_interval_s = 1.0 / rate if rate > 0 else 0.0
        groups = int(self.event_interval_s / PRODUCE_TICK_S)
        self.groups: list[set[StreamSession]] = [
            set() for _ in range(max(1, min(PRODUCE_GROUPS, groups)))
        ]
        self.group_streams = GROUP_STREAMS
        self._streaming = asyncio.Event()  # set while any stream is open: the producer runs
        self._background: set[asyncio.Task[None]] = set()

    async def open(self, user_id: uuid.UUID, profile_id: uuid.UUID, owner: str) -> StreamSession:
        """Check the binding, take the pair's lock for ``owner``; the caller streams the result."""
        if self.draining:
            m.REFUSED.labels("draining").inc()
            raise Draining("this stream instance is draining; reconnect", retry_ms=self.retry_ms)
        with m.OPEN_STAGE.labels("binding").time():
            binding = await self.base.binding(user_id, profile_id)
        if not binding.bound:
            m.REFUSED.labels("not_bound").inc()
            raise Forbidden(f"user {user_id} is not bound to profile {profile_id}")
        try:
            with m.OPEN_STAGE.labels("lock").time():
                grant = await self.locks.acquire(user_id, profile_id, owner)
        except Conflict:
            m.LOCK_OUTCOMES.labels("acquire", "denied").inc()
            m.REFUSED.labels("locked").inc()
            raise
        except DependencyUnavailable:
            m.REFUSED.labels("lock_unavailable").inc()
            raise
        m.LOCK_OUTCOMES.labels("acquire", grant.result).inc()
        self.supersede(grant)  # this instance's own older streams of the pair end at once
        return StreamSession(self, grant)

    def supersede(self, grant: LockOutcome) -> None:
        """End every stream here of ``grant``'s pair that holds an older fencing token."""
        for session in list(self.by_pair.get(grant.pair, ())):
            session.supersede(grant.fencing_token)

    async def follow(self, records: AsyncIterable[LockOutcome]) -> None:
        """Supersede on every grant in ``records`` (the lock log): grants made on any instance."""
        async for record in records:
            if record.result == "granted" and record.pair in self.by_pair:
                self.supersede(record)

    def track(self, session: StreamSession) -> None:
        """A stream started here (live connections, refreshes, events, the pair's streams)."""
        self.sessions.add(session)
        self.by_pair.setdefault(session.grant.pair, set()).add(session)
        session.group = pick_group([len(g) for g in self.groups], self.group_streams)
        self.groups[session.group].add(session)
        self._streaming.set()

    def untrack(self, session: StreamSession) -> None:
        """A stream here ended."""
        self.sessions.discard(session)
        self.groups[session.group].discard(session)
        same = self.by_pair.get(session.grant.pair)
        if same is not None:
            same.discard(session)
            if not same:
                del self.by_pair[session.grant.pair]

    @property
    def retry_ms(self) -> int:
        return self.settings.stream.drain_retry_ms

    def drain(self) -> None:
        """Refuse new streams and tell every open one to reconnect elsewhere.

        The locks are handed over, not released: the same session re-acquires its own lock at
        once on whichever instance it reconnects to.
        """
        self.draining = True
        for session in list(self.sessions):
            session.finish(Reconnect(reason="draining", session=session.owner))

    # -- refreshing ----------------------------------------------------------------------

    async def refresh_due(self) -> int:
        """Refresh every stream whose turn has come, all at once; how many were sent.

        A stream has at most one refresh in flight, so rounds may overlap: a slow round (a
        loaded keeper) does not hold back the streams due after it.
        """
        now = self.clock()
        due = [s for s in self.sessions if s.refresh_at_ms <= now and not s.refreshing]
        due = [s for s in due if not s.finished]
        if not due:
            return 0
        for session in due:
            session.refresh_at_ms = now + self.interval_ms
            session.refreshing = True
        try:
            got = await asyncio.gather(*(self._refresh(s) for s in due), return_exceptions=True)
        finally:
            for session in due:
                session.refreshing = False
        now = self.clock()
        for session, out in zip(due, got, strict=True):
            if isinstance(out, BaseException):
                if not isinstance(out, KubescalerError):
                    log.error("refresh of %s failed", session.grant.pair, exc_info=out)
                m.REFRESH_FAILURES.inc()
                result = "failed"
                outcome = None
            else:
                result, outcome = out.result, out
            m.lock_outcome("refresh", result)
            session.refreshed(outcome, now, self.refresh_retry_ms)
        return len(due)

    async def _refresh(self, session: StreamSession) -> LockOutcome:
        g = session.grant
        return await self.locks.refresh(
            g.user_id, g.profile_id, session.owner, g.fencing_token, self.refresh_timeout_ms
        )

    async def keep_refreshed(self) -> None:
        """Start a refresh round every ``tick_s`` until cancelled; a failing round is logged."""
        rounds: set[asyncio.Task[int]] = set()
        try:
            while True:
                await asyncio.sleep(self.tick_s)
                task = asyncio.create_task(self.refresh_due())
                rounds.add(task)
                task.add_done_callback(_logged(rounds))
        finally:
            for task in rounds:
                task.cancel()

    # -- producing -----------------------------------------------------------------------

    def produce(self, group: int) -> None:
        """One tick of the producer: every stream of ``group`` gets its next event (or a drop),
        all stamped with this tick's time (the hub's clock: the one its locks' deadlines are
        checked against)."""
        ts_ms = self.clock()
        for session in self.groups[group]:  # produce() never joins or leaves a group
            session.produce(ts_ms)

    async def keep_producing(self) -> None:
        """Each stream's events at the configured rate, one group of streams per tick: one
        task and one timer for every stream of the process. Never bursts to catch up; an
        empty group's turn passes without a wake, and with no stream open nothing ticks."""
        if not self.event_interval_s:
            return
        loop = asyncio.get_running_loop()
        count = len(self.groups)
        tick = self.event_interval_s / count
        next_at, group = loop.time(), count - 1
        while True:
            if not self.sessions:
                self._streaming.clear()
                await self._streaming.wait()
                next_at = loop.time()
            group = (group + 1) % count
            next_at += tick
            if not self.groups[group]:
                continue  # some group has a stream: at most count - 1 turns pass like this
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # far behind (an overloaded loop): do not burst to catch up
                next_at = loop.time()
            self.produce(group)

    # -- background work -----------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def wait_background(self) -> None:
        if self._background:
            timeout = self.settings.lock.request_timeout_ms / 1000
            await asyncio.wait(self._background, timeout=timeout)
