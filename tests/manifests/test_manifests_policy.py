"""Policies over the rendered manifests: hardening, RBAC, probes, resources, images, wiring,
autoscaling. Who may reach whom (NetworkPolicies, the entry point) is test_manifests_network."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
import yaml
from rendering import MANIFESTS, SERVICES, Rendered, render

from kubescaler import settings
from kubescaler_dev.cluster.layout import NODE_NET


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_every_container_is_hardened(rendered: Rendered) -> None:
    """Non-root, seccomp RuntimeDefault, read-only root, no escalation, every capability dropped."""
    for w, spec in rendered.pod_specs():
        where = f"{rendered.overlay}: {w['kind']}/{w['metadata']['name']}"
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] != 0, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        for c in _containers(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, f"{where}/{c['name']}"
            assert sc["readOnlyRootFilesystem"] is True, f"{where}/{c['name']}"
            assert sc["capabilities"]["drop"] == ["ALL"], f"{where}/{c['name']}"
            assert "add" not in sc["capabilities"], f"{where}/{c['name']}"
            assert not sc.get("privileged"), f"{where}/{c['name']}"


def test_app_pods_have_a_writable_tmp_and_only_stream_has_an_api_token(
    rendered: Rendered,
) -> None:
    """A read-only root needs an emptyDir /tmp; only stream calls the Kubernetes API (to set its
    pod-deletion-cost), so only stream pods mount a token, and its account does not by default."""
    for w, c in rendered.app_containers():
        spec = w["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], w["metadata"]["name"]
        is_stream = w["metadata"]["name"] == "stream"
        assert spec["automountServiceAccountToken"] is is_stream, w["metadata"]["name"]
        assert spec["serviceAccountName"] == w["metadata"]["name"]
    for sa in rendered.of_kind("ServiceAccount"):
        if sa["metadata"]["name"] in SERVICES:
            assert sa["automountServiceAccountToken"] is False, sa["metadata"]["name"]
    for w, spec in rendered.pod_specs():
        if w["metadata"]["name"] not in (*SERVICES, "prometheus"):
            assert spec["automountServiceAccountToken"] is False, w["metadata"]["name"]


# ------------------------------------------------------------------ RBAC


def _bound_accounts(binding: dict[str, Any]) -> set[str]:
    return {s["name"] for s in binding["subjects"] if s["kind"] == "ServiceAccount"}


def test_rbac_grants_stream_only_patch_on_pods_in_its_namespace(rendered: Rendered) -> None:
    """Least privilege: one namespaced Role, only pods, only patch (get at most), bound to the
    stream account alone; no kubescaler process account is bound to anything else."""
    (role,) = [r for r in rendered.of_kind("Role") if r["metadata"]["name"].startswith("stream")]
    for rule in role["rules"]:
        assert rule["apiGroups"] == [""]
        assert rule["resources"] == ["pods"]
        assert set(rule["verbs"]) <= {"get", "patch"}
        assert "patch" in rule["verbs"]
    bindings = rendered.of_kind("RoleBinding", "ClusterRoleBinding")
    (binding,) = [b for b in bindings if b["roleRef"]["name"] == role["metadata"]["name"]]
    assert binding["kind"] == "RoleBinding"
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "stream", "namespace": role["metadata"]["namespace"]}
    ]
    for b in bindings:
        bound = _bound_accounts(b) & set(SERVICES)
        assert bound <= {"stream"}, f"{b['kind']}/{b['metadata']['name']} binds {bound}"
        if "stream" in bound:
            assert b is binding, f"stream is also bound by {b['metadata']['name']}"


def test_stream_knows_its_pod_name_and_has_pod_deletion_cost_on(rendered: Rendered) -> None:
    """The downward API gives KUBESCALER_STREAM_POD_NAME; kubescaler-config turns the feature on."""
    stream = rendered.get("Deployment", "stream")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in stream["env"]}
    field = env["KUBESCALER_STREAM_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.name"
    cfg = settings.load(rendered.config()).stream
    assert cfg.pod_deletion_cost is True
    assert cfg.kube_sa_dir == "/var/run/secrets/kubernetes.io/serviceaccount"
    assert "KUBESCALER_STREAM_KUBE_API_URL" not in rendered.config(), "in-cluster address"


def test_auth_is_on_in_production_only_with_its_key_from_the_secret(rendered: Rendered) -> None:
    """production: auth on, HTTPS-only cookie, stream-open limits per address behind one proxy
    hop, and the HMAC key on main and stream from kubescaler-secrets (never in the config); the
    other overlays keep the seed's open mode and set no key."""
    conf = settings.load(rendered.config())
    secret_env = {}
    for w, c in rendered.app_containers():
        for e in c.get("env", []):
            if e["name"] == "KUBESCALER_AUTH_SECRET":
                secret_env[w["metadata"]["name"]] = e["valueFrom"]["secretKeyRef"]
    assert "KUBESCALER_AUTH_SECRET" not in rendered.config()
    if rendered.production:
        assert conf.auth.enabled
        assert conf.auth.cookie_secure
        # local-production lifts it: every test client there comes from one address
        assert (conf.limits.opens_per_address > 0) == (rendered.overlay == "production")
        assert conf.limits.proxy_hops == 1
        ref = {"name": "kubescaler-secrets", "key": "auth-secret"}
        assert secret_env == {"main": ref, "stream": ref}
    else:
        assert not conf.auth.enabled
        assert secret_env == {}


def test_every_container_has_requests_and_limits(rendered: Rendered) -> None:
    for w, spec in rendered.pod_specs():
        for c in _containers(spec):
            res = c["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res[kind]), f"{w['metadata']['name']}/{c['name']}"


def test_every_main_container_has_startup_readiness_and_liveness_probes(
    rendered: Rendered,
) -> None:
    for w, spec in rendered.pod_specs():
        for c in spec["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in c, f"{rendered.overlay}: {w['metadata']['name']}/{c['name']}"


def test_app_probes_use_healthz_and_readyz_on_the_serving_port(rendered: Rendered) -> None:
    """Liveness and start-up on /healthz, readiness on /readyz, all on the named http port."""
    for w, c in rendered.app_containers():
        name = w["metadata"]["name"]
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz", name
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"]["port"] in ports, name


def test_one_image_one_process_per_deployment(rendered: Rendered) -> None:
    """Each service runs the one image with its CLI subcommand as `args`."""
    seen = {}
    for w, c in rendered.app_containers():
        assert "command" not in c, "the image's ENTRYPOINT is the kubescaler CLI"
        seen[c["args"][0]] = w["metadata"]["name"]
    assert seen == {s: s for s in SERVICES}


def test_images_are_pinned(rendered: Rendered) -> None:
    """Every image has an explicit tag, never latest, and one tag per image name."""
    tags: dict[str, set[str]] = {}
    for _, spec in rendered.pod_specs():
        for c in _containers(spec):
            name, _, tag = c["image"].rpartition(":")
            assert name, f"untagged image {c['image']}"
            assert tag, f"untagged image {c['image']}"
            assert "/" not in tag
            assert tag != "latest"
            tags.setdefault(name, set()).add(tag)
    assert all(len(t) == 1 for t in tags.values()), tags


def test_every_service_selects_existing_pods_on_existing_ports(rendered: Rendered) -> None:
    templates = [
        (w["spec"]["template"]["metadata"]["labels"], w["spec"]["template"]["spec"])
        for w in rendered.workloads()
    ]
    for svc in rendered.of_kind("Service"):
        sel = svc["spec"]["selector"]
        matching = [
            spec for labels, spec in templates if all(labels.get(k) == v for k, v in sel.items())
        ]
        assert matching, f"{rendered.overlay}: Service {svc['metadata']['name']} selects no pods"
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for spec in matching:
                ports = [p for c in spec["containers"] for p in c.get("ports", [])]
                assert any(target in (p.get("name"), p["containerPort"]) for p in ports), (
                    f"Service {svc['metadata']['name']}: no container port {target}"
                )


def test_workload_selectors_match_their_templates(rendered: Rendered) -> None:
    for w in rendered.workloads():
        labels = w["spec"]["template"]["metadata"]["labels"]
        for k, v in w["spec"]["selector"]["matchLabels"].items():
            assert labels[k] == v


def test_scrape_annotations_name_the_serving_port(rendered: Rendered) -> None:
    for w, c in rendered.app_containers():
        ann = w["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true"
        assert ann["prometheus.io/path"] == "/metrics"
        assert int(ann["prometheus.io/port"]) == c["ports"][0]["containerPort"]


def test_stream_scale_down_drains_before_it_is_killed(rendered: Rendered) -> None:
    """terminationGracePeriodSeconds > preStop pause + KUBESCALER_STREAM_GRACE_S."""
    stream = rendered.get("Deployment", "stream")
    spec = stream["spec"]["template"]["spec"]
    pre_stop = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = float(rendered.config()["KUBESCALER_STREAM_GRACE_S"])
    assert spec["terminationGracePeriodSeconds"] > int(pre_stop[1]) + grace
    assert "replicas" not in stream["spec"], "the autoscaler owns the stream replica count"


def _hpa_behavior(rendered: Rendered, name: str) -> dict[str, Any]:
    for so in rendered.of_kind("ScaledObject"):
        if so["metadata"]["name"] == name:
            return dict(so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"])
    return dict(rendered.get("HorizontalPodAutoscaler", name)["spec"]["behavior"])


def test_every_overlay_autoscales_main_on_cpu_and_stream_and_lock_keeper_on_their_metrics(
    rendered: Rendered,
) -> None:
    main = rendered.get("HorizontalPodAutoscaler", "main")["spec"]
    # production keeps two of each stateless service: one lost node leaves one answering
    assert (main["minReplicas"], main["maxReplicas"]) == (2 if rendered.production else 1, 3)
    assert main["metrics"][0]["resource"]["target"]["averageUtilization"] == 80
    for name in ("stream", "lock-keeper"):
        kinds = [
            d["kind"]
            for d in rendered.of_kind("ScaledObject", "HorizontalPodAutoscaler")
            if d["metadata"]["name"] == name
        ]
        assert len(kinds) == 1, f"{rendered.overlay}: {name} needs exactly one autoscaler"
    down = _hpa_behavior(rendered, "stream")["scaleDown"]
    if rendered.overlay in ("local", "local-classic"):  # seconds, for the local cluster's tests
        assert down["stabilizationWindowSeconds"] >= 30
        return
    assert down["stabilizationWindowSeconds"] >= 300
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]


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
    "value": "-Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=5000",
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
    Prometheus in place of the Prometheus Operator's PodMonitor (and KEDA asking it), Traefik's
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
        r"|/spec/template/spec/containers/\d+/envFrom/0/configMapRef/name)$"
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
    assert docs.keys() - mine.keys() == {("PodMonitor", "kubescaler")}
    assert mine.keys() - docs.keys() <= added
    for k in docs.keys() & mine.keys():
        for path in _differences(docs[k], mine[k]):
            if path in LOCAL_ADDITIONS:
                LOCAL_ADDITIONS[path](k, docs[k], mine[k])
                continue
            assert allowed.match(path), f"{k}: {path} differs from production"


def doc_image(doc: dict[str, Any], path: str) -> str:
    node: Any = doc
    for part in path.strip("/").split("/"):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return str(node)


def test_autoscaling_numbers_come_from_one_place() -> None:
    """KEDA and prometheus-adapter variants carry the values of base/autoscaling-values.yaml."""
    values = yaml.safe_load((MANIFESTS / "base" / "autoscaling-values.yaml").read_text())["data"]
    keda = render("dev").get("ScaledObject", "stream")["spec"]
    assert keda["triggers"][0]["metadata"]["threshold"] == values["streamConnectionsPerPod"]
    assert keda["minReplicaCount"] == int(values["streamMinReplicas"])
    assert keda["maxReplicaCount"] == int(values["streamMaxReplicas"])
    hpa = render("classic").get("HorizontalPodAutoscaler", "stream")["spec"]
    assert hpa["metrics"][0]["pods"]["target"]["averageValue"] == values["streamConnectionsPerPod"]
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == "connections"
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (
        keda["minReplicaCount"],
        keda["maxReplicaCount"],
    )
    lk = render("dev").get("ScaledObject", "lock-keeper")["spec"]
    assert lk["triggers"][0]["metadata"]["pendingEntriesCount"] == values["lockKeeperPendingPerPod"]
    lk_hpa = render("classic").get("HorizontalPodAutoscaler", "lock-keeper")["spec"]
    target = lk_hpa["metrics"][0]["external"]["target"]["averageValue"]
    assert target == values["lockKeeperPendingPerPod"]
    # the seed's numbers
    assert (values["streamConnectionsPerPod"], values["streamMaxReplicas"]) == ("5", "5")
    assert math.isfinite(float(values["lockKeeperPendingPerPod"]))


@pytest.mark.parametrize("overlay", ["dev", "classic"])
def test_dev_secrets_are_marked_placeholders(overlay: str) -> None:
    secret = render(overlay).of_kind("Secret")[0]
    text = (MANIFESTS / "overlays" / overlay / "kustomization.yaml").read_text()
    assert "PLACEHOLDER" in text
    assert secret["metadata"]["name"].startswith("kubescaler-secrets")
