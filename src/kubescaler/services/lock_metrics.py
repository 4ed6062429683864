"""The lock-keeper's Prometheus metrics, defined once; docs, dashboards and alerts use the names.

- ``kubescaler_lock_commands_total{action,result,path}``: what became of each command, by the
  subscriber that read it (``fresh``, ``claimed``) or ``redelivered`` (answered from the store);
  a busy or unreadable one has that word as its result.
- ``kubescaler_lock_apply_seconds{action}``: an applied command's batch, end to end.
- ``kubescaler_lock_batch_commands``: commands per batch.
- ``kubescaler_lock_step_seconds{step}``: a batch's claim, vote, fence and commit, timed by
  wrapping the use case's ports in :class:`Timed` (the use case stays free of metrics).
- ``kubescaler_lock_commands_pending``: the group's backlog, the autoscaling signal (set by the
  consumer group's upkeep, ``adapters/lockgroup.py``), and
  ``kubescaler_lock_oldest_pending_seconds``: how long its oldest command has waited.
- ``kubescaler_lock_master_up{master}`` and ``kubescaler_lock_master_voting{master}``: each
  Redlock master as this keeper's recovery step saw it, every second (``master`` is its index).
- ``kubescaler_lock_commands_taken_over_total{verdict}``: commands this keeper took over from
  a ``silent`` or ``dead`` keeper (``services/takeover.py``), and
  ``kubescaler_lock_claims_released_total``: the in-flight claims of dead keepers it released.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import prometheus_client as prom

from kubescaler.domain.recovery import MasterState
from kubescaler.services.lockkeeping import Handled

COMMANDS = prom.Counter(
    "kubescaler_lock_commands_total",
    "Lock commands answered, by action and result.",
    ["action", "result", "path"],
)
APPLY = prom.Histogram(
    "kubescaler_lock_apply_seconds",
    "Time to apply one lock command (the batch it came in).",
    ["action"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_SIZE = prom.Histogram(
    "kubescaler_lock_batch_commands",
    "Commands per batch a lock-keeper applied.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
STEP = prom.Histogram(
    "kubescaler_lock_step_seconds",
    "Time of one step of a batch: claim, vote (every master at once), fence, commit.",
    ["step"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
PENDING = prom.Gauge(
    "kubescaler_lock_commands_pending",
    "Commands read by some worker and not yet acked.",
)

OLDEST_PENDING = prom.Gauge(
    "kubescaler_lock_oldest_pending_seconds",
    "Age of the oldest command read and not yet acked (above claim_idle_ms: nobody applies it).",
)
MASTER_UP = prom.Gauge(
    "kubescaler_lock_master_up",
    "Whether this keeper reached the Redlock master (by index in KUBESCALER_REDIS_LOCK_URLS).",
    ["master"],
)
MASTER_VOTING = prom.Gauge(
    "kubescaler_lock_master_voting",
    "Whether the master votes (0: down, or back empty and abstaining until caught up).",
    ["master"],
)

TAKEN_OVER = prom.Counter(
    "kubescaler_lock_commands_taken_over_total",
    "Commands taken over from a keeper whose heartbeat lapsed, by verdict (silent, dead).",
    ["verdict"],
)
RELEASED = prom.Counter(
    "kubescaler_lock_claims_released_total",
    "In-flight claims of dead keepers released so their commands apply at once.",
)


def taken_over(verdict: str, taken: int, released: int) -> None:
    """Count one takeover: ``taken`` commands from a ``verdict`` keeper, ``released`` claims."""
    TAKEN_OVER.labels(verdict).inc(taken)
    RELEASED.inc(released)


def count(handled: Sequence[Handled], source: str, took: float) -> None:
    """Count one batch that took ``took`` seconds, read by subscriber ``source``."""
    BATCH_SIZE.observe(len(handled))
    for h in handled:
        action = h.cmd.action if h.cmd is not None else "unknown"
        if h.path == "applied":
            APPLY.labels(action).observe(took)
            COMMANDS.labels(action, h.outcome.result if h.outcome else "", source).inc()
        elif h.path == "redelivered":
            COMMANDS.labels(action, h.outcome.result if h.outcome else "", "redelivered").inc()
        else:
            COMMANDS.labels(action, h.path, source).inc()


class Timed:
    """A port whose ``steps`` (coroutine methods) are timed into STEP; the rest passes through.

    Where a batch's time goes, per step, for Prometheus and ``bench_locks``. The timed methods
    are made once, here: a batch pays only the clock reads and the observation."""

    def __init__(self, port: object, *steps: str) -> None:
        self._port = port
        for name in steps:
            setattr(self, name, _timed(getattr(port, name), STEP.labels(name)))

    def __getattr__(self, name: str) -> Any:  # only what is not a step gets here
        return getattr(self._port, name)


def _timed(method: Any, step: Any) -> Any:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            step.observe(time.perf_counter() - start)

    return timed


def masters_seen(states: Sequence[MasterState | None]) -> None:
    """What a recovery step saw of each master: reached (up) and voting (ready)."""
    for i, state in enumerate(states):
        MASTER_UP.labels(str(i)).set(state is not None)
        MASTER_VOTING.labels(str(i)).set(state is not None and state.ready)
