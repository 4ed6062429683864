"""The lock-keeper process: each batch of commands, decoded, goes to the use case.

The broker (``adapters/lockbroker.py``) reads the command stream in batches and decodes the
entries (``adapters/lockwire.py``); :meth:`Worker.handle` hands each batch to
:class:`~kubescaler.services.lockkeeping.LockKeeping`, whose commit stores, logs, acknowledges
and publishes the replies, and counts what became of each command
(``services/lock_metrics.py``). Beside the broker run the keeper's heartbeat and its watch over
the other keepers (``services/takeover.py``: it takes over a gone keeper's commands and hands
them to :meth:`Worker.handle` too), the consumer group's upkeep (``adapters/lockgroup.py``) and
a small Litestar app: liveness, readiness (the stream Redis and a quorum of masters) and
``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from litestar import Litestar

from kubescaler.adapters import lockstate, redis_client
from kubescaler.adapters.keepers import Heartbeat, Keepers
from kubescaler.adapters.lockbroker import Source, build_broker
from kubescaler.adapters.lockgroup import CommandGroup
from kubescaler.adapters.lockledger import LockLedger
from kubescaler.adapters.redlock import Redlock, master_client
from kubescaler.adapters.redlock_recovery import MasterRecovery
from kubescaler.domain.locks import Delivery
from kubescaler.domain.takeover import Pulse
from kubescaler.entrypoints.serve import serve
from kubescaler.entrypoints.web import create_service_app
from kubescaler.services import lock_metrics
from kubescaler.services.lock_metrics import Timed
from kubescaler.services.lockkeeping import LockKeeping
from kubescaler.services.takeover import Fenced, Takeover
from kubescaler.settings import Settings


class Worker:
    """One lock-keeper: its broker, its Redis clients (they connect on first use), the use
    case over them and the takeover beside it; start() starts the takeover (inheriting what an
    earlier process of this name left) and the broker, stop() stops both and closes the
    clients."""

    def __init__(self, settings: Settings, name: str = "") -> None:
        s = settings
        self.name = name or s.process_name
        self.broker = build_broker(s, self.name, self.handle)
        self.state = redis_client.connect(s.redis)
        self.ledger = LockLedger(self.state, s.lock, self.name)
        timeout_s = s.lock.master_timeout_ms / 1000
        login = s.redis.lock_credentials
        masters = [master_client(url, timeout_s, *login) for url in s.redis.redlock_urls]
        self.redlock = Redlock(
            masters,
            s.lock.ttl_ms,
            s.lock.clock_drift_factor,
            s.lock.master_timeout_ms,
            key_prefix=lockstate.LOCK_PREFIX,
            fence_prefix=lockstate.FENCE_PREFIX,
        )
        self.recovery = MasterRecovery(
            masters, s.lock.ttl_ms, timeout_s, seed=self.state, report=lock_metrics.masters_seen
        )
        self._recovering: asyncio.Task[None] | None = None
        self.pulse = Pulse(s.lock.heartbeat_interval_ms, s.lock.heartbeat_ttl_ms)
        voting = Timed(self.redlock, "vote", "fence")
        ledger = Timed(Fenced(self.ledger, self.pulse), "claim", "fence", "commit")
        # Timed forwards every attribute: either port
        self.keeping = LockKeeping(voting, ledger, fencing=s.lock.fencing)
        self.group = CommandGroup(self.state, s.lock, self.broker)
        self.takeover = Takeover(
            self.name,
            Keepers(self.state, s.lock),
            Heartbeat(self.state, s.lock, self.name),
            self.pulse,
            self.handle_taken,
            report=lock_metrics.taken_over,
        )

    async def handle(self, batch: Sequence[Delivery], source: Source) -> None:
        """Apply one batch; raising leaves its entries pending for another worker."""
        start = time.perf_counter()
        handled = await self.keeping.apply(batch)
        lock_metrics.count(handled, source, time.perf_counter() - start)

    async def handle_taken(self, batch: Sequence[Delivery]) -> None:
        """Apply commands taken over from a gone keeper (counted as claimed ones)."""
        await self.handle(batch, "claimed")

    async def start(self) -> None:
        """Masters brought in (a new deployment's, or one that came back empty: one step now,
        then every second), what a dead keeper of this name left taken over, then the broker."""
        with contextlib.suppress(Exception):  # a master down now is the loop's to retry
            await self.recovery.step()
        self._recovering = asyncio.create_task(self.recovery.run())
        await self.takeover.start()
        await self.broker.start()

    async def stop(self) -> None:
        if self._recovering is not None:
            self._recovering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovering
        await self.broker.stop()
        await self.takeover.stop()
        await self.redlock.aclose()
        await self.state.aclose()


def create_app(settings: Settings, worker: Worker | None = None) -> Litestar:
    """The lock-keeper process: broker, group upkeep, health and metrics; the lifespan starts
    and stops them."""
    keeper = worker or Worker(settings)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await keeper.start()
        upkeep = asyncio.create_task(
            keeper.group.upkeep(
                lock_metrics.PENDING.set, report_oldest=lock_metrics.OLDEST_PENDING.set
            )
        )
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
