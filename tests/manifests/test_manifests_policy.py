"""Policies over the rendered manifests: hardening, RBAC, probes, resources, images, wiring,
autoscaling. Who may reach whom (NetworkPolicies, the entry point) is test_manifests_network."""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest
import yaml
from rendering import MANIFESTS, SERVICES, Rendered, render

from kubescaler import settings


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
    secrets = render(overlay).of_kind("Secret")
    text = (MANIFESTS / "overlays" / overlay / "kustomization.yaml").read_text()
    assert "PLACEHOLDER" in text
    names = sorted(s["metadata"]["name"].rsplit("-", 1)[0] for s in secrets)
    assert names == ["kubescaler-redis", "kubescaler-secrets"]
    for secret in secrets:  # every value says what it is
        for key, value in secret["data"].items():
            assert base64.b64decode(value).decode().endswith("-CHANGE-ME"), key
