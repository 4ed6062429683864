"""The lock-keeper process: each batch of commands, decoded, goes to the use case.

The broker (``adapters/lockbroker.py``) reads the command stream in batches and decodes the
entries (``adapters/lockwire.py``); :meth:`Worker.handle` hands each batch to
:class:`~kubescaler.services.lockkeeping.LockKeeping`, whose commit stores, logs, acknowledges
and publishes the replies, and counts what became of each command
(``services/lock_metrics.py``). Beside the broker run the consumer group's upkeep
(``adapters/lockgroup.py``) and a small Litestar app: liveness, readiness (the stream Redis and
a quorum of masters) and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from litestar import Litestar

from kubescaler.adapters import lockstate, redis_client
from kubescaler.adapters.lockbroker import Source, build_broker
from kubescaler.adapters.lockgroup import CommandGroup
from kubescaler.adapters.lockledger import LockLedger
from kubescaler.adapters.redlock import Redlock, master_client
from kubescaler.domain.locks import Delivery
from kubescaler.entrypoints.serve import serve
from kubescaler.entrypoints.web import create_service_app
from kubescaler.services import lock_metrics
from kubescaler.services.lock_metrics import Timed
from kubescaler.services.lockkeeping import LockKeeping
from kubescaler.settings import Settings


class Worker:
    """One lock-keeper: its broker, its Redis clients (they connect on first use) and the use
    case over them; start() starts the broker, stop() stops it and closes the clients."""

    def __init__(self, settings: Settings, name: str = "") -> None:
        s = settings
        self.name = name or s.process_name
        self.broker = build_broker(s, self.name, self.handle)
        self.state = redis_client.connect(s.redis)
        self.ledger = LockLedger(self.state, s.lock, self.name)
        timeout_s = s.lock.master_timeout_ms / 1000
        self.redlock = Redlock(
            [master_client(url, timeout_s) for url in s.redis.redlock_urls],
            s.lock.ttl_ms,
            s.lock.clock_drift_factor,
            s.lock.master_timeout_ms,
            key_prefix=lockstate.LOCK_PREFIX,
        )
        voting = Timed(self.redlock, "vote")
        ledger = Timed(self.ledger, "claim", "fence", "commit")
        self.keeping = LockKeeping(voting, ledger)  # Timed forwards every attribute: either port
        self.group = CommandGroup(self.state, s.lock, self.broker)

    async def handle(self, batch: Sequence[Delivery], source: Source) -> None:
        """Apply one batch; raising leaves its entries pending for another worker."""
        start = time.perf_counter()
        handled = await self.keeping.apply(batch)
        lock_metrics.count(handled, source, time.perf_counter() - start)

    async def start(self) -> None:
        await self.broker.start()

    async def stop(self) -> None:
        await self.broker.stop()
        await self.redlock.aclose()
        await self.state.aclose()


def create_app(settings: Settings, worker: Worker | None = None) -> Litestar:
    """The lock-keeper process: broker, group upkeep, health and metrics; the lifespan starts
    and stops them."""
    keeper = worker or Worker(settings)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await keeper.start()
        upkeep = asyncio.create_task(keeper.group.upkeep(lock_metrics.PENDING.set))
        try:
            yield
        finally:
            upkeep.cancel()
            await keeper.stop()

    return create_service_app(
        "lock-keeper",
        settings,
        handlers=[],
        checks={"redis": keeper.ledger.ping, "redlock": keeper.redlock.ready},
        lifespan=[lifespan],
    )


def run(settings: Settings) -> int:
    """Run one lock-keeper until SIGTERM/SIGINT (uvicorn stops the lifespan gracefully)."""
    return serve(create_app(settings), settings, settings.lock.keeper_port)
