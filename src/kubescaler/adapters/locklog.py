"""Follow the lock event log as it grows, for processes that act on what the keepers decide.

A blocking ``XREAD`` from the last id seen: every record arrives once and in log order, and a
follower that loses Redis for a while resumes where it stopped instead of missing what was
logged meanwhile (a pub/sub message sent while it was away would be gone).

After a failover of the state Redis (its client asks the Sentinels on reconnection) it resumes
on the promoted replica from the same id. That replica may lack the last records the follower
already read (replication is asynchronous); new records get later ids (they are stamped with
the time), so nothing after them is skipped, and what the follower read and the replica lost
stays read: the grants it announced did happen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from kubescaler.domain.locks import LockRecord, now_ms, record_from_fields

log = logging.getLogger(__name__)
BATCH = 500
RETRY_S = 1.0


class LogTail:
    """The records appended to ``stream`` from ``since_ms`` on (default: a second ago).

    Starting a little in the past costs nothing: a follower acting on grants ignores any that
    are not newer than what it holds.
    """

    def __init__(
        self, redis: Redis, stream: str, block_ms: int = 1000, since_ms: int | None = None
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.block_ms = block_ms
        self.last_id = f"{now_ms() - 1000 if since_ms is None else since_ms}-0"

    async def follow(self) -> AsyncIterator[LockRecord]:
        """Records as they are logged, forever; Redis errors are logged and waited out."""
        failing = False
        while True:
            try:
                got: Any = await self.redis.xread(
                    {self.stream: self.last_id}, count=BATCH, block=self.block_ms
                )
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("cannot read the lock log %s: %s; retrying", self.stream, exc)
                failing = True
                await asyncio.sleep(RETRY_S)
                continue
            if failing:
                log.warning("reading the lock log %s again", self.stream)
                failing = False
            for _, entries in got or []:
                for log_id, fields in entries:
                    self.last_id = log_id.decode() if isinstance(log_id, bytes) else log_id
                    try:
                        record = record_from_fields(fields, self.last_id)
                    except (msgspec.ValidationError, ValueError) as exc:
                        log.warning("skipping unreadable lock log record %s: %s", self.last_id, exc)
                        continue
                    yield record
