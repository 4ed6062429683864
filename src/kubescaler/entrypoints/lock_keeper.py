"""The lock-keeper process: each batch of commands, decoded, goes to the use case.

The broker (``adapters/lockbroker.py``) reads the command stream in batches and decodes the
entries; :meth:`Worker.handle` hands each batch to
:class:`~kubescaler.services.lockkeeping.LockKeeping`, which applies, commits, acknowledges
and answers it (acknowledgement is manual: it happens in the commit). Beside the broker, a
small Litestar app serves liveness, readiness and ``/metrics`` (``services/lock_metrics.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from litestar import Litestar
from redis.asyncio import Redis

from kubescaler.adapters import lockstate, redis_client
from kubescaler.adapters.lockbroker import Source, build_broker
from kubescaler.adapters.lockgroup import CommandGroup
from kubescaler.adapters.lockledger import LockLedger
from kubescaler.adapters.redlock import Redlock, master_client
from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.domain.lockrules import quorum
from kubescaler.domain.locks import Delivery
from kubescaler.entrypoints.serve import serve
from kubescaler.entrypoints.web import create_service_app
from kubescaler.services import lock_metrics
from kubescaler.services.lock_metrics import Timed
from kubescaler.services.lockkeeping import LockKeeping
from kubescaler.settings import Settings

WATCH_EVERY_S = 2.0
log = logging.getLogger(__name__)


class Worker:
    """One lock-keeper: its broker, its Redis clients and the use case, opened by start()."""

    def __init__(self, settings: Settings, name: str = "") -> None:
        self.settings = settings
        self.name = name or settings.process_name
        self.broker = build_broker(settings, self.name, self.handle)
        self.state: Redis | None = None
        self.redlock: Redlock | None = None
        self.keeping: LockKeeping | None = None
        self.group: CommandGroup | None = None

    async def handle(self, batch: Sequence[Delivery], path: Source) -> None:
        """Apply one batch; raising leaves its entries pending for another worker."""
        assert self.keeping is not None, "worker not started"
        start = time.perf_counter()
        handled = await self.keeping.apply(batch)
        lock_metrics.count(handled, path, time.perf_counter() - start)

    async def start(self) -> None:
        s = self.settings
        self.state = redis_client.connect(s.redis.url, s.redis.timeout_s)
        masters = [master_client(u, s.lock.master_timeout_ms / 1000) for u in s.redis.redlock_urls]
        self.redlock = Redlock(
            masters,
            s.lock.ttl_ms,
            s.lock.clock_drift_factor,
            s.lock.master_timeout_ms,
            key_prefix=lockstate.LOCK_PREFIX,
        )
        ledger = Timed(LockLedger(self.state, s.lock, self.name), "claim", "fence", "commit")
        voting = Timed(self.redlock, "vote")
        self.keeping = LockKeeping(voting, ledger)  # Timed forwards every attribute: either port
        self.group = CommandGroup(self.state, s.lock, self.broker)
        await self.broker.start()

    async def stop(self) -> None:
        await self.broker.stop()
        if self.redlock is not None:
            await self.redlock.aclose()
        if self.state is not None:
            await self.state.aclose()


def create_app(settings: Settings, worker: Worker | None = None) -> Litestar:
    """The lock-keeper process: broker + health + metrics, all opened in the lifespan."""
    keeper = worker or Worker(settings)

    async def watch() -> None:
        """Every few seconds: the consumer group still exists, and the backlog gauge."""
        while True:
            group = keeper.group
            try:
                assert group is not None
                if await group.ensure():
                    log.warning(
                        "consumer group %s was gone; created it again", settings.lock.command_group
                    )
                if await group.revive():
                    log.warning("restarted the broker: a subscriber had stopped")
                lock_metrics.PENDING.set(await group.pending())
            except Exception:  # the backlog is unknown while Redis is down
                lock_metrics.PENDING.set(float("nan"))
            await asyncio.sleep(WATCH_EVERY_S)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await keeper.start()
        watcher = asyncio.create_task(watch())
        try:
            yield
        finally:
            watcher.cancel()
            await keeper.stop()

    async def redis_check() -> None:
        assert keeper.state is not None
        await keeper.state.ping()

    async def quorum_check() -> None:
        assert keeper.redlock is not None
        down = await keeper.redlock.ping()
        masters = len(settings.redis.redlock_urls)
        if masters - len(down) < quorum(masters):
            raise DependencyUnavailable("redlock", "lock quorum unavailable: " + ", ".join(down))

    return create_service_app(
        "lock-keeper",
        settings,
        handlers=[],
        checks={"redis": redis_check, "redlock": quorum_check},
        lifespan=[lifespan],
    )


def run(settings: Settings) -> int:
    """Run one lock-keeper until SIGTERM/SIGINT (uvicorn stops the lifespan gracefully)."""
    return serve(create_app(settings), settings, settings.lock.keeper_port)
