"""kubescaler on a real one-node Kubernetes cluster, reached only through the Gateway.

The cluster runs the dev overlay (through manifests/overlays/local) on real pods: containerd,
the kubelet, kube-proxy, CoreDNS, metrics-server, KEDA and Traefik, all built here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubehelp import (
    GATEWAY,
    Kube,
    Pair,
    await_for,
    ready_pods,
    redis_password,
    replay_verify,
    session,
    tls,
    wait_for,
)
from viewers import Viewer, close_all, open_viewers

from kubescaler_dev.cluster.gobuild import ensure_built
from kubescaler_dev.cluster.progress import ClusterError, Progress
from kubescaler_dev.cluster.stack import NAMESPACE
from kubescaler_dev.cluster.versions import BUILDS

# the first test also waits for the cluster to come up (Cassandra's first start in a pod)
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

APP = ("cassandra", "redis", "base", "main", "stream", "lock-keeper", "prometheus")


def test_every_kubescaler_pod_is_ready_with_its_probes(kube: Kube) -> None:
    """The dev overlay's pods run and pass their readiness probes (as written)."""
    for app in APP:
        pods = wait_for(f"{app} ready", lambda app=app: ready_pods(kube, app), 300)
        spec = pods[0]["spec"]["containers"][0]
        assert "readinessProbe" in spec, app
        assert "livenessProbe" in spec, app


def test_configmaps_secrets_and_network_policies_are_applied(kube: Kube) -> None:
    """Config comes from the generated (hashed) ConfigMap and Secret; policies exist as written."""
    main = kube.ns("get", "deploy", "main")["spec"]["template"]["spec"]["containers"][0]
    config = main["envFrom"][0]["configMapRef"]["name"]
    assert config.startswith("kubescaler-config-")
    kube.ns("get", "configmap", config)
    policies = {p["metadata"]["name"] for p in kube.ns("get", "networkpolicy")["items"]}
    assert {"default-deny", "egress-in-namespace", "cassandra", "redis", "base", "api-server"} <= (
        policies
    )


def test_redis_answers_a_lock_write_by_who_logged_in(kube: Kube) -> None:
    """Issue 24 on the cluster: inside the Redis pod, a lock write without a login gets NOAUTH,
    with main's login NOPERM, with the lock-keeper's OK (redis-cli, its password from the
    Secret in REDISCLI_AUTH, not on its command line)."""
    key = f"kubescaler:lock:fence:acl-probe-{uuid.uuid4()}"

    def write(user: str | None, *command: str) -> str:
        login = [f"REDISCLI_AUTH={redis_password(kube, user)}"] if user else []
        done = kube.run(
            "-n", NAMESPACE, "exec", "redis-0", "-c", "redis", "--", "env", *login,
            "redis-cli", *(["--user", user] if user else []), *(command or ("set", key, "1")),
            check=False,
        )  # fmt: skip
        return (done.stdout + done.stderr).strip()

    assert write(None).startswith("NOAUTH")
    assert write("main").startswith("NOPERM")
    assert write("replay").startswith("NOPERM")
    assert write("lock-keeper") == "OK"
    assert write("lock-keeper", "del", key) == "1"


#: Run in base's pod (the NetworkPolicy admits only base to Cassandra's CQL port): what a login
#: of nobody, of the disabled default superuser and of base's own role may do.
CASSANDRA_LOGINS = """
import json, os, uuid
from cassandra import Unauthorized
from cassandra.auth import PlainTextAuthProvider as P
from cassandra.cluster import Cluster, NoHostAvailable

def refused(auth):
    c = Cluster(["cassandra"], protocol_version=5, auth_provider=auth)
    try:
        c.connect()
        return "logged in"
    except NoHostAvailable as exc:
        return sorted({type(e).__name__ for e in exc.errors.values()})
    finally:
        c.shutdown()

out = {"nobody": refused(None), "cassandra": refused(P("cassandra", "cassandra"))}
e = os.environ
c = Cluster(["cassandra"], protocol_version=5,
            auth_provider=P(e["KUBESCALER_CASSANDRA_USERNAME"], e["KUBESCALER_CASSANDRA_PASSWORD"]))
s = c.connect()
key = uuid.uuid4()
s.execute("INSERT INTO kubescaler.user (id, name) VALUES (%s, 'auth-check')", [key])
out["read"] = s.execute("SELECT name FROM kubescaler.user WHERE id = %s", [key]).one().name
s.execute("DELETE FROM kubescaler.user WHERE id = %s", [key])
for name, cql in [
    ("drop", "DROP KEYSPACE kubescaler"),
    ("grant", "GRANT ALL ON ALL KEYSPACES TO base"),
]:
    try:
        s.execute(cql)
        out[name] = "done"
    except Unauthorized:
        out[name] = "Unauthorized"
c.shutdown()
print(json.dumps(out))
"""


def test_cassandra_refuses_strangers_and_base_may_only_read_and_write(kube: Kube) -> None:
    """From base's pod: no login and cassandra/cassandra are refused; base's own role reads and
    writes its table but may not drop the keyspace or grant itself more."""
    done = kube.run(
        "-n", NAMESPACE, "exec", "deploy/base", "-c", "base", "--", "python", "-c",
        CASSANDRA_LOGINS,
    )  # fmt: skip
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {
        "nobody": ["AuthenticationFailed"],
        "cassandra": ["AuthenticationFailed"],
        "read": "auth-check",
        "drop": "Unauthorized",
        "grant": "Unauthorized",
    }


def test_an_invalid_manifest_is_refused_by_the_api_server(kube: Kube) -> None:
    """Server-side validation is live: an HTTPRoute port out of range names the field."""
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "broken", "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [{"name": "kubescaler"}],
            "rules": [{"backendRefs": [{"name": "main", "port": 70000}]}],
        },
    }
    done = kube.run("apply", "--dry-run=server", "-f", "-", input=json.dumps(route), check=False)
    assert done.returncode != 0
    assert "spec.rules[0].backendRefs[0].port" in done.stderr, done.stderr
    assert "65535" in done.stderr


def test_test_data_profiles_suggested_and_pages_through_the_gateway(pairs: list[Pair]) -> None:
    """The seed's public paths answer on the Gateway: /main/..., /index/..., the dashboard."""
    with httpx.Client(base_url=GATEWAY, verify=tls(), timeout=30) as http:
        profiles = http.get("/main/profiles")
        assert profiles.status_code == 200
        assert len(profiles.json()) == 80
        suggested = http.get("/main/suggested").json()
        assert suggested
        assert all(len(s["profiles"]) >= 2 for s in suggested)
        assert http.get("/main/users", params={"limit": 10}).status_code == 200
        pair = pairs[0]
        page = http.get(f"/index/{pair.user}/{pair.profile}")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert http.get("/dashboard").status_code == 200
        # not routed: internal endpoints stay internal
        assert http.get("/main/metrics").status_code == 404


async def test_twenty_racing_clients_on_one_pair_get_one_200_and_nineteen_409s(
    fresh: Pair,
) -> None:
    """Exclusivity across the cluster: one grant, every other session refused with 409."""

    async def one(http: httpx.AsyncClient, i: int) -> int:
        async with http.stream("GET", fresh.path(session(f"race{i}"))) as r:
            if r.status_code == 200:
                await asyncio.sleep(3)  # hold it while the others are refused
            return r.status_code

    async with httpx.AsyncClient(base_url=GATEWAY, verify=tls(), timeout=30) as http:
        codes = await asyncio.gather(*(one(http, i) for i in range(20)))
    assert sorted(codes) == [200] + [409] * 19, codes


async def test_a_stream_carries_2_mb_per_s_with_its_fencing_token_and_login_lists_it(
    fresh: Pair, kube: Kube
) -> None:
    """About 2 MB/s of events through the Gateway, each with the grant's token; main's
    /login/{user} shows the profile live while it streams."""
    viewer = Viewer(fresh, session("rate"))
    viewer.start()
    try:
        grant = await viewer.granted()
        assert grant.token > 0
        await asyncio.sleep(1)
        start_bytes, start = viewer.payload_bytes, time.monotonic()
        await asyncio.sleep(5)
        rate = (viewer.payload_bytes - start_bytes) / (time.monotonic() - start)
        assert 1.6e6 < rate < 2.6e6, f"{rate / 1e6:.2f} MB/s"
        assert viewer.wrong_tokens == 0
        async with httpx.AsyncClient(base_url=GATEWAY, verify=tls(), timeout=10) as http:
            live = (await http.get(f"/main/login/{fresh.user}")).json()
        assert fresh.profile in live
    finally:
        await viewer.close()
    replay_verify(kube)


def test_main_cpu_hpa_gets_its_metric_from_metrics_server(kube: Kube) -> None:
    """main's HPA (CPU, the seed's) reads a real utilisation from metrics-server."""

    def cpu() -> Any:
        hpa = kube.ns("get", "hpa", "main")
        for metric in hpa["status"].get("currentMetrics") or []:
            current = metric.get("resource", {}).get("current", {})
            if current.get("averageUtilization") is not None:
                return current
        return None

    current = wait_for("main's HPA CPU reading", cpu, 240, every=5)
    assert current["averageUtilization"] >= 0
    top = kube.run("top", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=main")
    assert "main-" in top.stdout


def test_lock_keeper_scales_on_its_command_backlog_as_the_manifest_says(kube: Kube) -> None:
    """KEDA's HPA for the lock-keeper reads the group's pending commands from Redis."""

    def reading() -> Any:
        hpa = kube.ns("get", "hpa", "keda-hpa-lock-keeper")
        metrics = hpa["status"].get("currentMetrics") or []
        return [m for m in metrics if m.get("type") == "External"]

    metrics = wait_for("lock-keeper HPA reading", reading, 180, every=5)
    assert "redis-streams" in metrics[0]["external"]["metric"]["name"]
    scaled = kube.ns("get", "scaledobject", "lock-keeper")
    ready = {c["type"]: c["status"] for c in scaled["status"]["conditions"]}
    assert ready["Ready"] == "True"


def stream_pods(kube: Kube) -> dict[str, int]:
    """Ready stream pods and the pod-deletion-cost each last wrote."""
    return {
        p["metadata"]["name"]: int(
            p["metadata"]
            .get("annotations", {})
            .get("controller.kubernetes.io/pod-deletion-cost", 0)
        )
        for p in ready_pods(kube, "stream")
    }


def rescale_events(kube: Kube) -> list[str]:
    events = kube.ns("get", "events", "--field-selector", "involvedObject.name=keda-hpa-stream")[
        "items"
    ]
    return [e["message"] for e in events if e["reason"] == "SuccessfulRescale"]


async def shape(viewers: list[Viewer], keep: dict[str, int]) -> list[Viewer]:
    """Close viewers so each pod keeps ``keep[pod]`` of them; return those kept."""
    kept, drop = [], []
    left = dict(keep)
    for v in viewers:
        if left.get(v.instance, 0) > 0:
            left[v.instance] -= 1
            kept.append(v)
        else:
            drop.append(v)
    assert not any(left.values()), f"not enough viewers on {left}"
    await close_all(drop)
    return kept


async def test_stream_scales_out_on_connections_and_back_draining_the_least_loaded(
    kube: Kube, pairs: list[Pair]
) -> None:
    """KEDA scales stream 1 -> 3 on live connections (HPA events say why); scaling back down
    removes the pods with the fewest connections first (pod-deletion-cost, even the oldest);
    their clients get `reconnect`, resume through the Gateway on a surviving pod with the same
    session and a higher fencing token, and keep streaming; replay --verify stays clean."""
    wait_for("stream at one ready pod", lambda: len(stream_pods(kube)) == 1, 240, every=5)
    [first_pod] = stream_pods(kube)
    viewers = await open_viewers([pairs.pop() for _ in range(12)], "scale")
    try:
        assert {v.instance for v in viewers} == {first_pod}
        await await_for("3 ready stream pods", lambda: len(stream_pods(kube)) == 3, 240, 3)
        hpa = kube.ns("get", "hpa", "keda-hpa-stream")
        assert hpa["status"]["desiredReplicas"] == 3
        assert hpa["spec"]["metrics"][0]["external"]["target"]["averageValue"] == "5"
        assert any("New size: 3" in m and "above target" in m for m in rescale_events(kube)), (
            rescale_events(kube)
        )

        # new viewers spread over the three pods; keep opening until the new pods have three
        pods = sorted(stream_pods(kube))
        newer = [p for p in pods if p != first_pod]
        for _ in range(40):
            on = {p: sum(v.instance == p for v in viewers) for p in pods}
            if all(on[p] >= 3 for p in newer):
                break
            viewers += await open_viewers([pairs.pop()], "spread")
        # the OLDEST pod keeps one viewer, the newer ones three: 7 in all -> 2 pods, and the
        # one to go is the oldest, which a ReplicaSet without deletion costs would keep
        viewers = await shape(viewers, {first_pod: 1, newer[0]: 3, newer[1]: 3})
        [moved] = [v for v in viewers if v.instance == first_pod]
        old_token = moved.token
        await await_for(
            "scale-down to 2 pods", lambda: set(stream_pods(kube)) == set(newer), 240, 3
        )
        grant = await moved.regranted(after=1)
        assert "reconnect" in moved.controls
        assert grant.instance in newer
        assert grant.token > old_token

        # 3 on one pod, 1 on the other (after the move): 4 in all -> 1 pod, the lighter goes
        await asyncio.sleep(12)  # a pod-deletion-cost interval: both pods' costs written
        on = {p: [v for v in viewers if v.instance == p] for p in newer}
        heavy, light = sorted(newer, key=lambda p: len(on[p]), reverse=True)
        viewers = await shape(viewers, {heavy: 3, light: 1})
        [moved2] = [v for v in viewers if v.instance == light]
        grants_before = len(moved2.grants)
        old_token = moved2.token
        await await_for("scale-down to 1 pod", lambda: set(stream_pods(kube)) == {heavy}, 240, 3)
        grant = await moved2.regranted(after=grants_before)
        assert grant.instance == heavy
        assert grant.token > old_token

        # every viewer that is left streams on the survivor, with its own token
        before = [v.data_events for v in viewers]
        await asyncio.sleep(3)
        for v, n in zip(viewers, before, strict=True):
            assert v.instance == heavy
            assert v.data_events > n + 30, (v.session, v.controls)
            assert v.wrong_tokens == 0
            assert not v.ended
            tokens = [g.token for g in v.grants]
            assert tokens == sorted(tokens)
    finally:
        await close_all(viewers)
    replay_verify(kube)


async def test_a_killed_stream_pod_is_replaced_and_its_clients_come_back(
    kube: Kube, pairs: list[Pair]
) -> None:
    """Force-deleting a stream pod (no drain): the Deployment replaces it, its clients'
    connections drop, they reconnect with their sessions and take their pairs straight back."""
    viewers = await open_viewers([pairs.pop() for _ in range(3)], "killed")
    try:
        victim = viewers[0].instance
        tokens = {v.session: v.token for v in viewers}
        kube.run("-n", NAMESPACE, "delete", "pod", victim, "--grace-period=0", "--force")
        for v in viewers:
            if v.instance == victim:
                await v.regranted(after=1, timeout=180)
        await await_for("a ready stream pod", lambda: stream_pods(kube), 180, 3)
        before = [v.data_events for v in viewers]
        await asyncio.sleep(3)
        for v, n in zip(viewers, before, strict=True):
            assert v.instance != victim
            assert v.token >= tokens[v.session]
            assert v.data_events > n
    finally:
        await close_all(viewers)
    replay_verify(kube)


def test_a_version_the_module_proxy_refuses_stops_the_build_with_one_line(
    tmp_path: Path,
) -> None:
    """A pinned version the module proxy will not serve (this SDK version is refused here) is
    one line naming it, before anything is built or started."""
    refused = dataclasses.replace(
        BUILDS["coredns"],
        name="refused",
        module="github.com/ucloud/ucloud-sdk-go",
        version="v0.22.116",
        binaries={"x": "github.com/ucloud/ucloud-sdk-go/ucloud"},
    )
    with pytest.raises(ClusterError) as caught:
        ensure_built(refused, tmp_path, Progress(lambda _: None))
    assert "\n" not in str(caught.value)
    assert "github.com/ucloud/ucloud-sdk-go@v0.22.116" in str(caught.value)
    assert not (tmp_path / "bin").exists()
