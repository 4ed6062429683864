"""Upkeep of the lock-keepers' consumer group on the command stream.

FastStream creates the group when its subscribers start and stops a subscriber for good when
the group vanishes (a Redis restarted without its data). :class:`CommandGroup` puts the group
back, restarts a broker whose subscriber stopped, and reads the backlog for the autoscaler;
:meth:`CommandGroup.upkeep` does all three every few seconds for as long as the worker runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from faststream.redis import RedisBroker
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from kubescaler.domain.locks import now_ms
from kubescaler.settings import LockSettings

log = logging.getLogger(__name__)
#: How often the upkeep looks at the group and reads the backlog.
UPKEEP_EVERY_S = 2.0


class CommandGroup:
    def __init__(self, redis: Redis, lock: LockSettings, broker: RedisBroker) -> None:
        self.redis = redis
        self.lock = lock
        self.broker = broker

    async def ensure(self) -> bool:
        """Create the consumer group if it is gone; True when it had to be created.

        From id 0, so commands published before the group came back are read too (late ones
        are answered "expired").
        """
        try:
            await self.redis.xgroup_create(
                self.lock.command_stream, self.lock.command_group, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise
        return True

    async def revive(self) -> bool:
        """Restart the broker if FastStream stopped a subscriber; True when it restarted.

        A restart in place does what FastStream expects of a process restart, without dropping
        the worker's health endpoint.
        """
        if all(sub.running for sub in self.broker.subscribers):
            return False
        await self.broker.stop()
        await self.broker.start()
        return True

    async def backlog(self) -> tuple[int, float]:
        """Commands read by some worker and not yet acknowledged (the autoscaling backlog),
        and the age in seconds of the oldest of them (its stream id's time; 0 when none)."""
        info = await self.redis.xpending(self.lock.command_stream, self.lock.command_group)
        count, oldest = int(info["pending"]), info.get("min")
        if not count or not oldest:
            return count, 0.0
        since_ms = int(
            (oldest.decode() if isinstance(oldest, bytes) else str(oldest)).split("-")[0]
        )
        return count, max(0.0, (now_ms() - since_ms) / 1000)

    async def upkeep(
        self,
        report_pending: Callable[[float], None],
        every_s: float = UPKEEP_EVERY_S,
        report_oldest: Callable[[float], None] = lambda _: None,
    ) -> None:
        """Forever, every ``every_s``: the group exists, the broker's subscribers run, and the
        backlog goes to ``report_pending``, its oldest command's age to ``report_oldest`` (NaN
        while they cannot be read: Redis is down)."""
        while True:
            try:
                if await self.ensure():
                    log.warning(
                        "consumer group %s was gone; created it again", self.lock.command_group
                    )
                if await self.revive():
                    log.warning("restarted the broker: a subscriber had stopped")
                count, oldest_s = await self.backlog()
                report_pending(count)
                report_oldest(oldest_s)
            except Exception:  # the backlog is unknown while Redis is down
                report_pending(float("nan"))
                report_oldest(float("nan"))
            await asyncio.sleep(every_s)
