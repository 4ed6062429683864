"""The classic overlay's stand-in metrics adapter, without a cluster: its build is keyed by its
own sources and pinned in the version table, and the add-on that runs it serves the APIs the
overlay's HPAs read, configured from the overlay's rule file."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import yaml

from kubescaler_dev.cluster import custom_metrics
from kubescaler_dev.cluster.app import NAMESPACE
from kubescaler_dev.cluster.catalog import catalog
from kubescaler_dev.cluster.images import ROOT
from kubescaler_dev.cluster.kubectl import Kubectl
from kubescaler_dev.cluster.kustomize import AddOn
from kubescaler_dev.cluster.layout import Layout
from kubescaler_dev.cluster.progress import Progress
from kubescaler_dev.cluster.versions import (
    BUILDS,
    CUSTOM_METRICS_APISERVER,
    IMAGES,
    METRICS_ADAPTER_DIR,
)

COMPONENTS = ROOT / "manifests" / "components"


def test_the_adapter_build_carries_its_go_files_but_not_its_tests() -> None:
    build = BUILDS["metrics-adapter"]
    on_disk = sorted(
        p.name for p in METRICS_ADAPTER_DIR.glob("*.go") if not p.name.endswith("_test.go")
    )
    assert [path.rsplit("/", 1)[-1] for path, _ in build.sources] == on_disk
    for path, text in build.sources:
        assert text == (METRICS_ADAPTER_DIR / path.rsplit("/", 1)[-1]).read_text()
    assert list(build.binaries.values()) == [f"{build.wrapper}/cmd/metrics-adapter"]
    assert build.static  # it runs in a FROM scratch image


def test_a_change_of_the_adapter_sources_changes_its_cache_key() -> None:
    build = BUILDS["metrics-adapter"]
    (first, text), *rest = build.sources
    edited = dataclasses.replace(build, sources=((first, text + "\n// edited\n"), *rest))
    assert edited.key != build.key


def test_the_library_version_is_pinned_once_for_the_build_and_the_go_tests() -> None:
    """devstack/metrics-adapter/go.mod (for go test and go vet in place) requires the version
    the build uses, and the image is tagged with it."""
    go_mod = (METRICS_ADAPTER_DIR / "go.mod").read_text()
    required = re.search(r"sigs\.k8s\.io/custom-metrics-apiserver (v\S+)", go_mod)
    assert required is not None
    assert required.group(1) == CUSTOM_METRICS_APISERVER == BUILDS["metrics-adapter"].version
    assert IMAGES["metrics-adapter"].startswith(
        f"kubescaler.local/metrics-adapter:{CUSTOM_METRICS_APISERVER}-"
    )


def rendered(tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The add-on's folder and its documents by ``Kind/name``."""
    folder = custom_metrics.custom_metrics(tmp_path / "adapter").folder
    docs = [json.loads(d) for d in (folder / "metrics-adapter.yaml").read_text().split("\n---\n")]
    return folder, {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def test_the_apiservices_route_every_metrics_api_version_to_the_adapter(tmp_path: Path) -> None:
    _, docs = rendered(tmp_path)
    services = {k: d["spec"] for k, d in docs.items() if k.startswith("APIService/")}
    assert sorted(services) == [
        "APIService/v1beta1.custom.metrics.k8s.io",
        "APIService/v1beta1.external.metrics.k8s.io",
        "APIService/v1beta2.custom.metrics.k8s.io",
    ]
    service = docs["Service/metrics-adapter"]["spec"]
    for name, spec in services.items():
        assert name == f"APIService/{spec['version']}.{spec['group']}"
        port = service["ports"][0]["port"]
        assert spec["service"] == {
            "name": "metrics-adapter",
            "namespace": "kube-system",
            "port": port,
        }
        # a self-signed adapter: never a caBundle beside it (the API server refuses both)
        assert spec["insecureSkipTLSVerify"] is True
        assert "caBundle" not in spec
    # HPAs (and kubectl) get v1beta2 of custom metrics, v1beta1 still answers
    custom = {
        s["version"]: s["versionPriority"]
        for s in services.values()
        if s["group"] == "custom.metrics.k8s.io"
    }
    assert custom["v1beta2"] > custom["v1beta1"]
    assert custom_metrics.EXTERNAL_APISERVICE == "v1beta1.external.metrics.k8s.io"


def test_the_rules_configmap_is_the_classic_overlays_file(tmp_path: Path) -> None:
    """Generated from a copy taken when the add-on is written (the overlay's file is the only
    source), mounted where the adapter's --config looks."""
    folder, docs = rendered(tmp_path)
    overlay = COMPONENTS / "prometheus-adapter" / "adapter-rules.yaml"
    assert (folder / "adapter-rules.yaml").read_bytes() == overlay.read_bytes()
    kustomization = json.loads((folder / "kustomization.yaml").read_text())
    assert kustomization["configMapGenerator"] == [
        {"name": "metrics-adapter-rules", "files": ["config.yaml=adapter-rules.yaml"]}
    ]
    pod = docs["Deployment/metrics-adapter"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--config="))
    mount = next(m for m in container["volumeMounts"] if m["name"] == "rules")
    assert config == f"{mount['mountPath']}/config.yaml"
    volume = next(v for v in pod["volumes"] if v["name"] == "rules")
    assert volume["configMap"]["name"] == "metrics-adapter-rules"


def test_the_adapter_runs_its_pinned_local_image_hardened(tmp_path: Path) -> None:
    _, docs = rendered(tmp_path)
    pod = docs["Deployment/metrics-adapter"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGES["metrics-adapter"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "limits" in container["resources"]
    assert "readinessProbe" in container
    (image,) = [i for i in catalog(Layout(tmp_path)) if i.ref == IMAGES["metrics-adapter"]]
    assert image.containerfile.startswith("FROM scratch\n")


def test_the_adapter_asks_the_overlays_prometheus_which_admits_it(tmp_path: Path) -> None:
    """The URL names components/in-cluster-prometheus' Service in the classic overlay's
    namespace, and that component's NetworkPolicy admits the adapter's pods."""
    _, docs = rendered(tmp_path)
    component = COMPONENTS / "in-cluster-prometheus" / "prometheus.yaml"
    objects = list(yaml.safe_load_all(component.read_text()))
    (service,) = [o for o in objects if o["kind"] == "Service"]
    port = service["spec"]["ports"][0]["port"]
    classic = yaml.safe_load((ROOT / "manifests/overlays/classic/kustomization.yaml").read_text())
    assert classic["namespace"] == NAMESPACE
    want = f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{port}"
    (container,) = docs["Deployment/metrics-adapter"]["spec"]["template"]["spec"]["containers"]
    assert f"--prometheus-url={want}" in container["args"]

    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")
    labels = docs["Deployment/metrics-adapter"]["spec"]["template"]["metadata"]["labels"]
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    assert any(
        all(labels.get(e["key"]) in e["values"] for e in peer["podSelector"]["matchExpressions"])
        for peer in peers
        if "podSelector" in peer
    )


class _Kubectl(Kubectl):
    """Records the commands instead of running them."""

    def __init__(self) -> None:
        self.progress = Progress()
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str, what: str = "", timeout: float = 300) -> str:
        self.calls.append(args)
        return ""


def test_switching_deletes_kedas_apiservice_first_and_switching_back_restores_it(
    tmp_path: Path,
) -> None:
    """KEDA's operator has put its CA in its APIService; applied over it, ours (which skips
    verification) would be refused, so the switch deletes it first."""
    adapter = custom_metrics.custom_metrics(tmp_path / "adapter")
    keda = AddOn("KEDA", tmp_path / "keda")
    kubectl = _Kubectl()
    custom_metrics.use_adapter(kubectl, adapter)
    first, second = kubectl.calls[:2]
    assert first[:3] == ("delete", "apiservice", "v1beta1.external.metrics.k8s.io")
    assert second[0] == "apply"
    assert second[-1] == str(adapter.folder)
    waits = [c for c in kubectl.calls if c[0] == "wait"]
    assert any("apiservice/v1beta2.custom.metrics.k8s.io" in c for c in waits)

    kubectl.calls.clear()
    custom_metrics.restore_keda(kubectl, adapter, keda)
    assert kubectl.calls[0][:3] == ("delete", "-k", str(adapter.folder))
    assert kubectl.calls[1][0] == "apply"
    assert kubectl.calls[1][-1] == str(keda.folder)
