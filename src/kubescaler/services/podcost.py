"""Keep this stream pod's deletion cost equal to its live connections, so scale-down takes the
least-loaded pods first.

Best effort: one PATCH only when the count changed since the last one that landed, at most
every ``pod_cost_interval_s``; a failure is logged and counted
(``kubescaler_stream_pod_cost_failures_total``) and retried on the next tick, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from kubescaler.adapters.podcost import PodCostClient, PodCostConfigError
from kubescaler.services import stream_metrics as m
from kubescaler.settings import StreamSettings

log = logging.getLogger(__name__)


class CostWriter(Protocol):
    async def set_cost(self, cost: int) -> None: ...


class PodCostReporter:
    def __init__(self, writer: CostWriter, read: Callable[[], int], interval_s: float) -> None:
        self.writer = writer
        self.read = read
        self.interval_s = interval_s
        self.written: int | None = None  # the value of the last PATCH that landed
        self.failing = False

    def due(self, value: int) -> bool:
        """Whether ``value`` must be written: it differs from what the API last accepted."""
        return value != self.written

    async def tick(self) -> None:
        """Write the current count if it changed; swallow, log and count any failure."""
        value = self.read()
        if not self.due(value):
            return
        try:
            await self.writer.set_cost(value)
        except Exception as exc:  # best effort: nothing may reach the streams
            m.POD_COST_FAILURES.inc()
            level = logging.DEBUG if self.failing else logging.WARNING
            log.log(level, "pod-deletion-cost update to %d failed: %r", value, exc)
            self.failing = True
            return
        if self.failing:
            log.info("pod-deletion-cost updates work again")
        self.failing = False
        self.written = value
        m.POD_COST_UPDATES.inc()

    async def run(self) -> None:
        """Tick every ``interval_s`` until cancelled."""
        while True:
            await self.tick()
            await asyncio.sleep(self.interval_s)


@contextlib.asynccontextmanager
async def pod_cost_updates(
    cfg: StreamSettings, read: Callable[[], int]
) -> AsyncIterator[PodCostReporter | None]:
    """While open, keep the pod's deletion cost at ``read()``; nothing runs when the setting is
    off, and a pod that cannot reach its API (misconfigured) logs it and streams on."""
    if not cfg.pod_deletion_cost:
        yield None
        return
    try:
        client = PodCostClient(cfg)
    except PodCostConfigError as exc:
        m.POD_COST_FAILURES.inc()
        log.error("pod-deletion-cost is on but cannot run: %s", exc)
        yield None
        return
    reporter = PodCostReporter(client, read, cfg.pod_cost_interval_s)
    task = asyncio.create_task(reporter.run(), name="pod-deletion-cost")
    try:
        yield reporter
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()
