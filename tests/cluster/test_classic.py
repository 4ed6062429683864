"""overlays/classic - the seed's own way - on the local cluster (local-classic swaps only
images, CPU requests and the autoscalers' windows): its plain Ingress served by the cluster's
default Ingress controller, and its HorizontalPodAutoscaler on the Pods metric `connections`,
read through custom.metrics.k8s.io from an adapter configured from the overlay's own rule file,
scaling stream 1 -> 3 -> 1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubehelp import GATEWAY, GATEWAY_HTTP, Kube, Pair, await_for, ready_pods, tls
from viewers import close_all, open_viewers

from kubescaler_dev.cluster.app import OVERLAYS, WORKLOADS
from kubescaler_dev.cluster.custom_metrics import custom_metrics, restore_keda, use_adapter
from kubescaler_dev.cluster.stack import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

#: the classic overlay's Secret is overlays/dev's placeholder (a local cluster only)
ADMIN = {"Authorization": "Bearer dev-admin-token-CHANGE-ME"}


@pytest.fixture(scope="module")
def classic(cluster: Cluster, kube: Kube) -> Iterator[list[Pair]]:
    """Classic in place of whatever runs in the namespace, the metrics adapter in place of
    KEDA's external metrics API; KEDA's given back afterwards."""
    kube.clear_namespace()
    cluster.recycle_volumes()
    addons = cluster.lay.state / "addons"
    adapter = custom_metrics(addons / "metrics-adapter")
    use_adapter(cluster.kubectl, adapter)
    try:
        cluster.app.apply(OVERLAYS / "local-classic", workloads=WORKLOADS)
        with httpx.Client(base_url=GATEWAY, verify=tls(), timeout=120, headers=ADMIN) as http:
            made = http.post("/main/testdata", params={"users": 60, "profiles": 40})
            assert made.status_code == 201, made.text
            profiles = http.get("/main/profiles", params={"limit": 5000}).json()
        yield [Pair(u, p["id"]) for p in profiles for u in p["users"]]
    finally:
        keda = next(a for a in cluster.addons() if a.name == "KEDA")  # as `up` applied it
        restore_keda(cluster.kubectl, adapter, keda)


def test_the_plain_ingress_routes_the_public_paths_and_only_them(classic: list[Pair]) -> None:
    """The Ingress has no class and no rewrite: the default controller serves it, main answers
    its public paths under /main itself, and main's metrics stay internal."""
    pair = classic[0]
    with httpx.Client(base_url=GATEWAY, verify=tls(), timeout=30) as http:
        assert http.get("/main/profiles").status_code == 200
        assert http.get(f"/main/login/{pair.user}").status_code == 200
        assert http.get("/main/metrics").status_code == 404
        assert http.get("/dashboard").status_code == 200
        assert http.get(f"/index/{pair.user}/{pair.profile}").status_code == 200
    # the Ingress over TLS only: plain HTTP is a permanent redirect to the same URL
    with httpx.Client(base_url=GATEWAY_HTTP, timeout=30) as http:
        plain = http.get("/main/profiles?limit=1")
    assert plain.status_code in (301, 308), plain.text
    assert plain.headers["location"] == "https://127.0.0.1/main/profiles?limit=1"


def stream_replicas(kube: Kube) -> int:
    return len(ready_pods(kube, "stream"))


def connections(kube: Kube) -> Any:
    """The HPA's own reading of the Pods metric `connections` (None until it has one)."""
    hpa = kube.ns("get", "hpa", "stream")
    for metric in hpa["status"].get("currentMetrics") or []:
        if metric.get("type") == "Pods" and metric["pods"]["metric"]["name"] == "connections":
            return metric["pods"]["current"]["averageValue"]
    return None


async def test_the_seeds_hpa_scales_stream_on_connections_1_3_1(
    classic: list[Pair], kube: Kube
) -> None:
    """Twelve live streams (5 per pod is the target): the HPA reads `connections` from the
    custom metrics API and scales stream to 3; with the streams closed, back to 1."""
    await await_for("stream at one pod", lambda: stream_replicas(kube) == 1, 240, 3)
    viewers = await open_viewers(classic[:12], "classic")
    try:
        await await_for("an HPA reading of connections", lambda: connections(kube), 180, 3)
        await await_for("3 ready stream pods", lambda: stream_replicas(kube) == 3, 240, 3)
        hpa = kube.ns("get", "hpa", "stream")
        assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "connections"
        assert hpa["status"]["desiredReplicas"] == 3
    finally:
        await close_all(viewers)
    await await_for("back to 1 stream pod", lambda: stream_replicas(kube) == 1, 300, 5)
    events = kube.ns("get", "events", "--field-selector", "involvedObject.name=stream")["items"]
    assert any(e["reason"] == "SuccessfulRescale" for e in events)
