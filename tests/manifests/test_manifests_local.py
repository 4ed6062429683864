"""The local overlays swap only what cannot exist on the local cluster: each difference from
the overlay they stand for is listed here and checked."""

from __future__ import annotations

import re
from typing import Any

from rendering import render

from kubescaler_dev.cluster.layout import NODE_NET


def doc_image(doc: dict[str, Any], path: str) -> str:
    node: Any = doc
    for part in path.strip("/").split("/"):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return str(node)


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """JSON paths where two documents differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d for key in sorted(a.keys() | b.keys())
            for d in _differences(a.get(key), b.get(key), f"{path}/{key}")
        ]  # fmt: skip
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _differences(x, y, f"{path}/{i}")
        ]
    return [] if a == b else [path]


def _only_nodes_admitted(key: tuple[str, str], a: dict[str, Any], b: dict[str, Any]) -> None:
    assert key == ("NetworkPolicy", "entry"), key
    peers = a["spec"]["ingress"][0]["from"]
    assert b["spec"]["ingress"][0]["from"] == [*peers, {"ipBlock": {"cidr": NODE_NET}}]


#: what the local overlays add to Cassandra's environment: its waits for a real network shortened
FAST_JOIN = {
    "name": "JVM_EXTRA_OPTS",
    "value": "-Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=5000 "
    "-Dcassandra.superuser_setup_delay_ms=1000",
}
CASSANDRA_ENV = "/spec/template/spec/containers/0/env"


def _only_fast_join(key: tuple[str, str], theirs: dict[str, Any], mine: dict[str, Any]) -> None:
    """Cassandra's environment is theirs plus FAST_JOIN, nothing else."""
    assert key == ("StatefulSet", "cassandra"), f"{key}: its environment differs"
    env = theirs["spec"]["template"]["spec"]["containers"][0]["env"]
    assert mine["spec"]["template"]["spec"]["containers"][0]["env"] == [*env, FAST_JOIN]


#: what the local overlays add (Cassandra's waits; the nodes' range into main and stream: Traefik)
LOCAL_ADDITIONS = {CASSANDRA_ENV: _only_fast_join, "/spec/ingress/0/from": _only_nodes_admitted}


def test_the_local_overlay_swaps_only_what_cannot_exist_on_the_local_cluster() -> None:
    """manifests/overlays/local is dev with: stand-in images for the data stores and
    Prometheus, Traefik's GatewayClass, CPU requests that fit two cores, autoscaling windows
    in seconds, and Cassandra's joining waits shortened. Anything else that differs is a
    mistake."""
    dev, local = render("dev"), render("local")
    allowed = re.compile(
        r"(/spec/template/spec/(init)?[cC]ontainers/\d+/image"
        r"|/spec/template/spec/containers/0/resources/requests/cpu"
        r"|/spec/gatewayClassName"
        r"|/spec/pollingInterval"
        r"|/spec/advanced/horizontalPodAutoscalerConfig/behavior/scaleDown.*"
        r"|/spec/behavior.*)$"
    )
    docs = {(d["kind"], d["metadata"]["name"]): d for d in dev.docs}
    assert docs.keys() == {(d["kind"], d["metadata"]["name"]) for d in local.docs}
    swapped = set()
    for doc in local.docs:
        key = (doc["kind"], doc["metadata"]["name"])
        for path in _differences(docs[key], doc):
            if path in LOCAL_ADDITIONS:
                LOCAL_ADDITIONS[path](key, docs[key], doc)
                continue
            assert allowed.match(path), f"{key}: {path} differs from dev"
            if path.endswith("/image"):
                swapped.add(doc_image(doc, path))
    assert swapped == {
        "kubescaler.local/cassandra:5.0.8-bookworm",
        "kubescaler.local/redis:7.0-bookworm",
        "kubescaler.local/prometheus:v2.55.1",
    }


def test_local_production_swaps_only_what_cannot_exist_on_the_local_cluster() -> None:
    """manifests/overlays/local-production is production with: stand-in images, the in-cluster
    Prometheus in place of the Prometheus Operator's PodMonitor and PrometheusRule (and KEDA
    asking it), Traefik's
    GatewayClass, no per-address open limit, CPU requests that fit two shared cores, and
    Cassandra's joining waits shortened. Anything else that differs is a mistake."""
    prod, local = render("production"), render("local-production")
    allowed = re.compile(
        r"(/spec/template/spec/(init)?[cC]ontainers/\d+/image"
        r"|/spec/gatewayClassName"
        r"|/spec/triggers/0/metadata/serverAddress"
        r"|/data/KUBESCALER_LIMITS_OPENS_PER_ADDRESS"
        r"|/spec/template/spec/containers/0/resources/requests/cpu"
        r"|/metadata/name"  # the config's hash suffix, which follows its content
        r"|/spec/template/spec/(init)?[cC]ontainers/\d+/envFrom/0/configMapRef/name)$"
    )
    added = {("ConfigMap", "prometheus-config"), ("Deployment", "prometheus"),
             ("Service", "prometheus"), ("ServiceAccount", "prometheus"),
             ("NetworkPolicy", "prometheus"), ("NetworkPolicy", "prometheus-egress"),
             ("ClusterRole", "kubescaler-prometheus"),
             ("ClusterRoleBinding", "kubescaler-prometheus")}  # fmt: skip

    def key(d: dict[str, Any]) -> tuple[str, str]:
        name = d["metadata"]["name"]
        return d["kind"], name.rsplit("-", 1)[0] if d["kind"] == "ConfigMap" else name

    docs = {key(d): d for d in prod.docs}
    mine = {key(d): d for d in local.docs}
    operator = {("PodMonitor", "kubescaler"), ("PrometheusRule", "kubescaler")}
    assert docs.keys() - mine.keys() == operator
    assert mine.keys() - docs.keys() <= added
    for k in docs.keys() & mine.keys():
        for path in _differences(docs[k], mine[k]):
            if path in LOCAL_ADDITIONS:
                LOCAL_ADDITIONS[path](k, docs[k], mine[k])
                continue
            assert allowed.match(path), f"{k}: {path} differs from production"
