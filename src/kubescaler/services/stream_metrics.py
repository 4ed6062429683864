"""The stream service's Prometheus metrics. One process per pod, so the gauge is exact.

``kubescaler_stream_connections`` is the autoscaling metric: the manifests use this name as is.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTIONS_METRIC = "kubescaler_stream_connections"

CONNECTIONS = Gauge(CONNECTIONS_METRIC, "Live stream connections on this instance.")
BYTES = Counter("kubescaler_stream_sent_bytes", "Stream bytes handed to the server for sending.")
EVENTS = Counter("kubescaler_stream_sent_events", "Stream events handed to the server.")
DROPPED = Counter(
    "kubescaler_stream_dropped_events", "Events skipped because a client could not keep up."
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
