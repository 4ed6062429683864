"""The stream service's Prometheus metrics. One process per pod, so the gauge is exact.

``kubescaler_stream_connections`` is the autoscaling metric: the manifests use this name as is.

The counters every data event moves (bytes and events sent, events dropped) are plain integers
of :data:`TALLY`, added to on the event loop's thread and read by a collector at each scrape
(which runs on that thread too), so a scrape sees exact totals without a prometheus_client
``Counter.inc`` (and its lock) per event.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

CONNECTIONS_METRIC = "kubescaler_stream_connections"

CONNECTIONS = Gauge(CONNECTIONS_METRIC, "Live stream connections on this instance.")


class Tally:
    """The per-event counters: data bytes and events handed to the server, events dropped."""

    __slots__ = ("dropped", "sent_bytes", "sent_events")

    def __init__(self) -> None:
        self.sent_bytes = 0
        self.sent_events = 0
        self.dropped = 0


class TallyCollector(Collector):
    """Exposes a :class:`Tally` as the three counters (``..._total`` at each scrape)."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def collect(self) -> Iterator[CounterMetricFamily]:
        t = self.tally
        yield CounterMetricFamily(
            "kubescaler_stream_sent_bytes",
            "Stream bytes handed to the server for sending.",
            value=t.sent_bytes,
        )
        yield CounterMetricFamily(
            "kubescaler_stream_sent_events", "Stream events handed to the server.", t.sent_events
        )
        yield CounterMetricFamily(
            "kubescaler_stream_dropped_events",
            "Events skipped because a client could not keep up.",
            value=t.dropped,
        )


TALLY = Tally()
REGISTRY.register(TallyCollector(TALLY))
OPEN_STAGE = Histogram(
    "kubescaler_stream_open_seconds",
    "Time an open spent in each stage: the binding check with base, the lock acquire.",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REFUSED = Counter(
    "kubescaler_stream_refused", "Streams refused before they started, by reason.", ["reason"]
)
LOCK_OUTCOMES = Counter(
    "kubescaler_stream_lock_outcomes", "Lock outcomes seen by streams.", ["action", "result"]
)
REFRESH_FAILURES = Counter(
    "kubescaler_stream_refresh_failures", "Lock refreshes that got no answer."
)
POD_COST_UPDATES = Counter(
    "kubescaler_stream_pod_cost_updates", "Pod-deletion-cost annotations written to the API."
)
POD_COST_FAILURES = Counter(
    "kubescaler_stream_pod_cost_failures",
    "Pod-deletion-cost updates that failed (API unreachable, refused, misconfigured).",
)
DEADLINE_ENDS = Counter(
    "kubescaler_stream_deadline_ends",
    "Streams ended because their lock's deadline passed with no refresh heard (a paused "
    "process, a keeper that did not answer in time).",
)
SUPERSEDED = Counter(
    "kubescaler_stream_superseded",
    "Streams ended because their pair was granted again (a newer fencing token).",
)


_OUTCOMES: dict[tuple[str, str], Counter] = {}


def lock_outcome(action: str, result: str) -> None:
    """Count one lock outcome (the labelled child is looked up once, not per refresh)."""
    child = _OUTCOMES.get((action, result))
    if child is None:
        child = _OUTCOMES[(action, result)] = LOCK_OUTCOMES.labels(action, result)
    child.inc()
