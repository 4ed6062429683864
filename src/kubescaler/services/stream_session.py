"""One client's stream: its events queued, dropped or handed over, and how it ends.

A :class:`StreamSession` is opened by the hub (``services/streaming.py``) once the pair's lock
is granted, and lives until its client goes away or its lock says it must end (``lock-lost``,
``superseded``, or ``reconnect`` on drain). It queues its events in a small bounded queue and
drops what the client cannot take (``domain.stream.Drops``).

Producing: a data event is its numbers (seq, ts_ms, dropped), written into the stream's one
frame buffer (``domain.sse.DataFrame``: the stream's payload, cut once from the hub's random
pool, and a head formatted per event) when it is handed to the server. A stream whose client
keeps up hands it over at once, in the producer's tick (its :class:`Outlet` takes it when the
connection's send completes without waiting); only a stream whose send is waiting on its
client queues the numbers, at most ``queue_events`` of them, and drops the rest. So a task
wakes per event only for a client that is behind. The per-event counters are the plain
integers of ``stream_metrics.TALLY``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Protocol

from kubescaler.domain.errors import KubescalerError
from kubescaler.domain.locks import LockOutcome
from kubescaler.domain.sse import ControlEvent, DataFrame, Hello, Superseded
from kubescaler.domain.stream import (
    Drops,
    End,
    Keep,
    Retry,
    after_refresh,
    deadline_passed,
    send_deadline_ms,
    superseded_event,
)
from kubescaler.services import stream_metrics as m
from kubescaler.services.stream_metrics import TALLY

if TYPE_CHECKING:
    from kubescaler.services.streaming import StreamHub

log = logging.getLogger(__name__)

#: A data event as queued: (seq, ts_ms, dropped); ``StreamSession.frames`` makes its bytes.
Data = tuple[int, int, int]
#: What a stream's queue holds: a data event, or a control event.
Item = Data | ControlEvent


class Outlet(Protocol):
    """Where a stream's events go when its consumer is idle (``entrypoints.sse_stream.Pump``)."""

    def offer(self, item: Data) -> bool:
        """Hand ``item`` to the client now; False when that cannot be done at once (the item
        is then queued). True: handed over, or the consumer was woken to finish handing it."""
        ...


class StreamSession:
    """One client's stream, from its grant to its end: its queue, its drops, its lock's
    refresh times and outcome, and where its events go."""

    def __init__(self, hub: StreamHub, grant: LockOutcome) -> None:
        self.hub = hub
        self.grant = grant
        self.owner = grant.owner
        self.expires_at_ms = grant.expires_at_ms
        self.margin_ms = hub.settings.stream.deadline_margin_ms
        #: no data is produced or sent at or after this (this process' clock)
        self.deadline_ms = send_deadline_ms(grant.expires_at_ms, self.margin_ms)
        self.refresh_at_ms = hub.clock() + hub.interval_ms
        self.refreshing = False
        self.size = max(2, hub.settings.stream.queue_events)
        self.queue: deque[Item | None] = deque()
        #: The consumer waits for an item (idle) on this; an outlet is offered items then.
        self.waiter: asyncio.Future[None] | None = None
        self.idle = False
        self.outlet: Outlet | None = None
        self.drops = Drops()
        self.frames = DataFrame(hub.payload.take(), hub.instance, grant.fencing_token)
        self.group = 0
        self.finished = False
        self.release_on_end = hub.settings.stream.release_on_disconnect

    # -- the client's side -------------------------------------------------------------------

    def start(self) -> Hello:
        """The stream starts: it is tracked (connections, refreshes, events); its first event."""
        hub, grant = self.hub, self.grant
        hub.track(self)
        m.CONNECTIONS.inc()
        return Hello(
            session=self.owner,
            instance=hub.instance,
            token=grant.fencing_token,
            expires_at_ms=grant.expires_at_ms,
            user_id=str(grant.user_id),
            profile_id=str(grant.profile_id),
        )

    async def wait(self) -> None:
        """Until there is something for the consumer: an item queued, or the outlet woke it
        (meanwhile the consumer is idle and an outlet is offered each event)."""
        if self.queue:
            return
        self.idle = True
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.idle, self.waiter = False, None

    def wake(self) -> None:
        """The consumer has something to do: it is not idle from now on."""
        self.idle = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def hang_up(self) -> None:
        """The client went away: stop producing and end the stream, with no last event."""
        if self.finished:
            return
        self.finished = True
        self.queue.clear()
        self.queue.append(None)
        self.wake()

    def close(self) -> None:
        """The stream ended, however it ended: forget it here; release the pair if configured
        (a client that went away, not a lock lost, superseded or handed over on drain)."""
        self.finished = True
        self.hub.untrack(self)
        m.CONNECTIONS.dec()
        if self.release_on_end:
            self.hub.spawn(self._release())

    def finish(self, last: ControlEvent) -> None:
        """End the stream after ``last``: stop producing, discard queued data, send ``last``."""
        if self.finished:
            return
        self.finished = True
        self.release_on_end = False  # lock lost or superseded, or handed over on drain
        self.queue.clear()
        self.queue.extend((last, None))
        self.wake()

    def supersede(self, newest_token: int) -> None:
        """End with ``superseded`` if ``newest_token`` is a later grant of this pair than ours."""
        event = superseded_event(self.grant.fencing_token, newest_token)
        if event is not None and not self.finished:
            m.SUPERSEDED.inc()
            self.finish(event)

    def refreshed(self, out: LockOutcome | None, now: int, retry_ms: int) -> None:
        """Apply a refresh's outcome (None: no answer): keep streaming (after no answer, try
        again in ``retry_ms``), or end as it says."""
        if self.finished:
            return
        verdict = after_refresh(out, self.grant.fencing_token, now, self.expires_at_ms, retry_ms)
        if isinstance(verdict, Keep):
            self.expires_at_ms = verdict.expires_at_ms
            self.deadline_ms = send_deadline_ms(verdict.expires_at_ms, self.margin_ms)
        elif isinstance(verdict, Retry):
            self.refresh_at_ms = now + retry_ms
        elif isinstance(verdict, End):
            if isinstance(verdict.event, Superseded):
                m.SUPERSEDED.inc()
            else:
                log.warning("stream of %s ends: %s", self.grant.pair, verdict.event)
            self.finish(verdict.event)

    # -- producing -----------------------------------------------------------------------

    def expire(self) -> None:
        """The lock's deadline passed with no refresh heard: end with ``lock-lost`` now, the
        data queued discarded (none of it may go out on a lapsed lock)."""
        if not self.finished:
            m.DEADLINE_ENDS.inc()
            log.warning("stream of %s ends: its lock's deadline passed", self.grant.pair)
            self.finish(deadline_passed())

    def produce(self, ts_ms: int) -> None:
        """One event is due (made at ``ts_ms``): hand it to the outlet while the consumer is
        idle, else queue it, or count it dropped when the queue is full (the client is behind).
        At or past the lock's deadline the stream ends instead."""
        if self.finished:
            return
        if ts_ms >= self.deadline_ms:
            self.expire()
            return
        queue = self.queue
        due = self.drops.tick(room=len(queue) < self.size)
        if due is None:
            TALLY.dropped += 1
            return
        item = (due[0], ts_ms, due[1])
        if self.idle and self.outlet is not None and self.outlet.offer(item):
            return
        queue.append(item)
        self.wake()

    async def _release(self) -> None:
        g = self.grant
        with contextlib.suppress(KubescalerError):
            out = await self.hub.locks.release(g.user_id, g.profile_id, self.owner, g.fencing_token)
            m.LOCK_OUTCOMES.labels("release", out.result).inc()
