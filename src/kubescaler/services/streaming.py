"""Exclusive streams: open one for a bound (user, profile) pair under its lock, feed it, end it.

One :class:`StreamHub` per stream process holds what its streams share (the lock client, the
base client, the drain switch); one :class:`StreamSession` per client produces events into a
small bounded queue and drops what the client cannot take, refreshes the lock while the client
stays, and ends with a ``lock-lost``, ``reconnect`` or ``superseded`` event when it must.

One live stream per pair: when a pair is granted again (the same session re-entering, or after
a hand-over) the hub ends its own older streams of that pair at once, and learns of grants made
elsewhere from the lock event log (:meth:`StreamHub.follow`), so an older stream on any
instance ends within a moment, not at its next refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Coroutine
from typing import Any

from kubescaler.adapters.base_client import BaseClient
from kubescaler.adapters.lockclient import LockClient
from kubescaler.domain.errors import Conflict, DependencyUnavailable, Forbidden, KubescalerError
from kubescaler.domain.locks import LockOutcome, superseded
from kubescaler.domain.stream import (
    Hello,
    LockLost,
    Payload,
    Reconnect,
    StreamEvent,
    Superseded,
    control_event,
    data_event,
)
from kubescaler.services import stream_metrics as m
from kubescaler.settings import Settings

log = logging.getLogger(__name__)


class Draining(KubescalerError):
    """This instance is shutting down: reconnect (the entry point picks another instance)."""

    status = 503


class StreamHub:
    def __init__(self, settings: Settings, base: BaseClient, locks: LockClient) -> None:
        self.settings = settings
        self.instance = settings.instance or f"{settings.host}:{settings.stream_port}"
        self.base = base
        self.locks = locks
        self.payload = Payload(settings.stream.event_bytes)
        self.sessions: set[StreamSession] = set()
        self.by_pair: dict[str, set[StreamSession]] = {}
        self.draining = False
        self._background: set[asyncio.Task[None]] = set()

    async def open(self, user_id: uuid.UUID, profile_id: uuid.UUID, owner: str) -> StreamSession:
        """Check the binding, take the pair's lock for ``owner``; the caller streams the result."""
        if self.draining:
            m.REFUSED.labels("draining").inc()
            raise Draining("this stream instance is draining; reconnect", retry_ms=self._retry)
        binding = await self.base.binding(user_id, profile_id)
        if not binding.bound:
            m.REFUSED.labels("not_bound").inc()
            raise Forbidden(f"user {user_id} is not bound to profile {profile_id}")
        try:
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
        """A stream started here (live connections, and the pair's streams to supersede)."""
        self.sessions.add(session)
        self.by_pair.setdefault(session.grant.pair, set()).add(session)

    def untrack(self, session: StreamSession) -> None:
        """A stream here ended."""
        self.sessions.discard(session)
        same = self.by_pair.get(session.grant.pair)
        if same is not None:
            same.discard(session)
            if not same:
                del self.by_pair[session.grant.pair]

    @property
    def _retry(self) -> int:
        return self.settings.stream.drain_retry_ms

    def drain(self) -> None:
        """Refuse new streams and tell every open one to reconnect elsewhere.

        The locks are handed over, not released: the same session re-acquires its own lock at
        once on whichever instance it reconnects to.
        """
        self.draining = True
        for session in list(self.sessions):
            session.finish(
                control_event(Reconnect(reason="draining", session=session.owner), self._retry)
            )

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def wait_background(self) -> None:
        if self._background:
            timeout = self.settings.lock.request_timeout_ms / 1000
            await asyncio.wait(self._background, timeout=timeout)


class StreamSession:
    def __init__(self, hub: StreamHub, grant: LockOutcome) -> None:
        self.hub = hub
        self.grant = grant
        self.owner = grant.owner
        self.expires_at_ms = grant.expires_at_ms
        size = max(2, hub.settings.stream.queue_events)
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(size)
        self.finished = False
        self.release_on_end = hub.settings.stream.release_on_disconnect
        self._producer: asyncio.Task[None] | None = None

    # -- the client's side -------------------------------------------------------------------

    async def events(self) -> AsyncIterator[bytes]:
        """The bytes of the stream, from ``hello`` to the end; ends the session however it ends."""
        hub, grant = self.hub, self.grant
        hub.track(self)
        m.CONNECTIONS.inc()
        self._producer = asyncio.create_task(self._produce())
        refresher = asyncio.create_task(self._refresh())
        try:
            hello = Hello(
                session=self.owner,
                instance=hub.instance,
                token=grant.fencing_token,
                expires_at_ms=grant.expires_at_ms,
                user_id=str(grant.user_id),
                profile_id=str(grant.profile_id),
            )
            yield control_event(hello)
            while (item := await self.queue.get()) is not None:
                yield item
                m.BYTES.inc(len(item))
                m.EVENTS.inc()
        finally:
            self.finished = True
            self._producer.cancel()
            refresher.cancel()
            hub.untrack(self)
            m.CONNECTIONS.dec()
            if self.release_on_end:
                hub.spawn(self._release())

    def finish(self, last: bytes) -> None:
        """End the stream after ``last``: stop producing, discard queued data, send ``last``."""
        if self.finished:
            return
        self.finished = True
        self.release_on_end = False  # lock lost or superseded, or handed over on drain
        if self._producer is not None:
            self._producer.cancel()
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(last)
        self.queue.put_nowait(None)

    def supersede(self, newest_token: int) -> None:
        """End with ``superseded`` if ``newest_token`` is a later grant of this pair than ours."""
        held = self.grant.fencing_token
        if self.finished or not superseded(held, newest_token):
            return
        m.SUPERSEDED.inc()
        reason = f"a newer stream of this pair took over (fencing token {newest_token})"
        self.finish(control_event(Superseded(token=newest_token, held_token=held, reason=reason)))

    # -- background work ---------------------------------------------------------------------

    async def _produce(self) -> None:
        """Make events at the configured rate; a full queue means the client is slow: drop."""
        cfg, hub = self.hub.settings.stream, self.hub
        loop = asyncio.get_running_loop()
        interval = 1.0 / cfg.events_per_s
        next_at, seq, dropped = loop.time(), 0, 0
        while True:
            next_at += interval
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # far behind (an overloaded loop): do not burst to catch up
                next_at = loop.time()
            seq += 1
            if self.queue.full():
                dropped += 1
                m.DROPPED.inc()
                continue
            event = StreamEvent(
                seq=seq,
                instance=hub.instance,
                ts_ms=int(time.time() * 1000),
                token=self.grant.fencing_token,
                dropped=dropped,
                payload=hub.payload.take(),
            )
            dropped = 0
            self.queue.put_nowait(data_event(event))

    async def _refresh(self) -> None:
        """Refresh the lock while the client stays; end the stream once it is not ours."""
        hub, g = self.hub, self.grant
        interval = hub.settings.lock.refresh_interval_ms / 1000
        while not self.finished:
            await asyncio.sleep(interval)
            try:
                out = await hub.locks.refresh(g.user_id, g.profile_id, self.owner, g.fencing_token)
            except DependencyUnavailable as exc:
                m.REFRESH_FAILURES.inc()
                log.warning("refresh of %s failed: %s", g.pair, exc.message)
                if time.time() * 1000 + interval * 1000 < self.expires_at_ms:
                    continue  # still valid past the next try
                out = None
            m.LOCK_OUTCOMES.labels("refresh", out.result if out else "failed").inc()
            if out is not None and out.result == "refreshed":
                self.expires_at_ms = out.expires_at_ms
                continue
            if out is not None and out.superseded_by:  # the keeper saw the newer grant first
                self.supersede(out.superseded_by)
                return
            reason = out.detail or out.result if out else "refresh failed"
            self.finish(control_event(LockLost(reason=reason)))
            return

    async def _release(self) -> None:
        g = self.grant
        with contextlib.suppress(KubescalerError):
            out = await self.hub.locks.release(g.user_id, g.profile_id, self.owner, g.fencing_token)
            m.LOCK_OUTCOMES.labels("release", out.result).inc()
