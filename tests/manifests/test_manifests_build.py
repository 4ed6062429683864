"""Every overlay builds with kustomize and every object is a valid Kubernetes object."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml
from rendering import COMPONENTS, MANIFESTS, OVERLAYS, Rendered, render

#: the Kubernetes API version the schemas are checked against
K8S_VERSION = "1.33.0"

#: custom resources: the schemas are not shipped offline, so the fields their controllers
#: require are checked by hand (apiVersion -> required paths)
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): ["spec.scaleTargetRef.name", "spec.triggers"],
    ("keda.sh/v1alpha1", "TriggerAuthentication"): ["spec.secretTargetRef"],
    ("gateway.networking.k8s.io/v1", "Gateway"): ["spec.gatewayClassName", "spec.listeners"],
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): ["spec.parentRefs", "spec.rules"],
    ("monitoring.coreos.com/v1", "PodMonitor"): ["spec.selector", "spec.podMetricsEndpoints"],
    ("monitoring.coreos.com/v1", "PrometheusRule"): ["spec.groups"],
}


def _path(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for key in dotted.split("."):
        assert isinstance(node, dict), f"{dotted}: {key} is under a non-mapping"
        assert key in node, f"missing {dotted}"
        node = node[key]
    return node


def _uses(kustomization: dict[str, Any]) -> set[str]:
    return {p.rstrip("/").rsplit("/", 1)[-1] for p in kustomization.get("components", [])}


def test_every_component_is_built_by_some_overlay() -> None:
    """A component no overlay includes would never be built (and so never checked)."""
    used: set[str] = set()
    for overlay in OVERLAYS:
        text = (MANIFESTS / "overlays" / overlay / "kustomization.yaml").read_text()
        used |= _uses(yaml.safe_load(text))
    assert set(COMPONENTS) <= used, f"components built by no overlay: {set(COMPONENTS) - used}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds(overlay: str) -> None:
    """kustomize build succeeds and yields objects with apiVersion, kind and a name."""
    docs = render(overlay).docs
    assert docs
    for d in docs:
        assert d.get("apiVersion")
        assert d.get("kind")
        assert d.get("metadata", {}).get("name")


def test_core_objects_validate_against_the_api_schemas(rendered: Rendered) -> None:
    """Every built-in kind validates (strict: unknown fields fail) against the offline schemas."""
    checked = 0
    for d in rendered.docs:
        if (d["apiVersion"], d["kind"]) in CUSTOM:
            continue
        try:
            kubernetes_validate.validate(d, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path)
            pytest.fail(f"{rendered.overlay}: {d['kind']}/{d['metadata']['name']}: {where}: {exc}")
        checked += 1
    assert checked > 20


#: the kinds an overlay holds that belong to no namespace
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "IngressClass", "GatewayClass", "PriorityClass"}  # fmt: skip


def test_every_namespaced_object_lands_in_kubescalers_namespace(rendered: Rendered) -> None:
    """An overlay's `namespace:` reaches only the resources and components it builds itself:
    one that adds a component on top of another overlay must set it again, or that
    component's objects would go to whatever namespace `kubectl` defaults to."""
    astray = [
        f"{d['kind']}/{d['metadata']['name']}: {d['metadata'].get('namespace')}"
        for d in rendered.docs
        if d["kind"] not in CLUSTER_SCOPED and d["metadata"].get("namespace") != "kubescaler"
    ]
    assert astray == [], f"{rendered.overlay}: {astray}"


def test_custom_resources_have_their_required_fields(rendered: Rendered) -> None:
    """ScaledObject, Gateway, HTTPRoute and PodMonitor: known apiVersion and required fields."""
    custom_kinds = {kind for _, kind in CUSTOM}
    for d in rendered.docs:
        if d["kind"] in custom_kinds:
            key = (d["apiVersion"], d["kind"])
            assert key in CUSTOM, f"unexpected apiVersion {d['apiVersion']} for {d['kind']}"
            for field in CUSTOM[key]:
                assert _path(d, field), f"{d['kind']}/{d['metadata']['name']}: empty {field}"
    for so in rendered.of_kind("ScaledObject"):
        for trigger in so["spec"]["triggers"]:
            assert trigger["type"] in {"prometheus", "redis-streams", "redis-sentinel-streams"}
            assert trigger["metadata"]
        assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]


def test_dev_and_production_differ_where_they_should() -> None:
    """production: 3 Cassandra nodes at RF 3, 3 Redlock masters, PDBs, no generated Secret."""
    dev, prod = render("dev"), render("production")
    assert dev.get("StatefulSet", "cassandra")["spec"]["replicas"] == 1
    assert prod.get("StatefulSet", "cassandra")["spec"]["replicas"] == 3
    assert prod.get("StatefulSet", "cassandra")["spec"]["volumeClaimTemplates"]
    assert prod.config()["KUBESCALER_CASSANDRA_REPLICATION_FACTOR"] == "3"
    assert prod.get("StatefulSet", "redis-lock")["spec"]["replicas"] == 3
    assert dev.get("StatefulSet", "redis")["spec"]["replicas"] == 1
    assert not dev.config().get("KUBESCALER_REDIS_SENTINELS")  # dev: the one plain Redis
    assert not [d for d in dev.workloads() if d["metadata"]["name"] == "redis-sentinel"]
    lock_urls = prod.config()["KUBESCALER_REDIS_LOCK_URLS"].split(",")
    assert len(set(lock_urls)) == 3
    assert dev.config()["KUBESCALER_REDIS_LOCK_URLS"] == ""
    pdbs = {d["metadata"]["name"] for d in prod.of_kind("PodDisruptionBudget")}
    assert {"base", "main", "stream", "lock-keeper", "cassandra", "redis-lock"} <= pdbs
    assert {"redis", "redis-sentinel"} <= pdbs
    affinity = prod.get("StatefulSet", "cassandra")["spec"]["template"]["spec"]["affinity"]
    assert affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert not prod.of_kind("Secret"), "production expects its Secrets from outside git"
    names = sorted(s["metadata"]["name"].rsplit("-", 1)[0] for s in dev.of_kind("Secret"))
    assert names == ["kubescaler-redis", "kubescaler-secrets"]
