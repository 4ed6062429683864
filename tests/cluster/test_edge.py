"""Issue 24 on the real cluster: the stream account may set only its own pod's deletion cost
(the API server's admission policy refuses the rest), the Gateway serves HTTPS with the local
CA and redirects HTTP, its access log never holds a query string's token, and a production
start with a placeholder secret stops with a one-line message."""

from __future__ import annotations

import json
import ssl
import uuid
from typing import Any

import httpx
import pytest
from kubehelp import GATEWAY, GATEWAY_HTTP, Kube, ready_pods, tls, wait_for

from kubescaler_dev.cluster import layout
from kubescaler_dev.cluster.app import NAMESPACE
from kubescaler_dev.cluster.stack import Cluster

COST = "controller.kubernetes.io/pod-deletion-cost"
TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture(scope="module")
def stream_api(cluster: Cluster, kube: Kube) -> tuple[str, httpx.Client]:
    """A stream pod's name, and a client of the API server holding the token mounted in that
    pod (the one the stream process uses: bound to the pod, so it carries the pod's name)."""
    pod = wait_for("a ready stream pod", lambda: ready_pods(kube, "stream"), 300)[0]
    name = pod["metadata"]["name"]
    token = kube.run("-n", NAMESPACE, "exec", name, "-c", "stream", "--", "cat", TOKEN_FILE)
    ca = ssl.create_default_context(cafile=cluster.pki.cert("ca").crt)
    api = httpx.Client(
        base_url=f"https://{layout.HOST_IP}:{layout.API_PORT}/api/v1/namespaces/{NAMESPACE}",
        headers={"Authorization": f"Bearer {token.stdout.strip()}", **MERGE},
        verify=ca,
        timeout=30,
    )
    return name, api


def _patch(api: httpx.Client, pod: str, metadata: dict[str, Any]) -> httpx.Response:
    return api.patch(f"/pods/{pod}", content=json.dumps({"metadata": metadata}))


def test_the_stream_token_sets_its_own_pods_deletion_cost(
    kube: Kube, stream_api: tuple[str, httpx.Client]
) -> None:
    """What the stream process does every few seconds is allowed: its own cost annotation
    (put back as it was: the process writes it only when its count changes)."""
    own, api = stream_api
    before = kube.ns("get", "pod", own)["metadata"].get("annotations", {}).get(COST)
    done = _patch(api, own, {"annotations": {COST: "7"}})
    assert done.status_code == 200, done.text
    assert done.json()["metadata"]["annotations"][COST] == "7"
    back = _patch(api, own, {"annotations": {COST: before}})
    assert back.status_code == 200, back.text
    assert back.json()["metadata"].get("annotations", {}).get(COST) == before


def test_the_stream_token_may_not_patch_another_pod(
    kube: Kube, stream_api: tuple[str, httpx.Client]
) -> None:
    """The same patch on the Redis pod, or on another stream pod, is refused by the API
    server's admission policy, naming the pod the token is bound to."""
    own, api = stream_api
    others = ["redis-0"] + [
        p["metadata"]["name"]
        for p in ready_pods(kube, "stream") + ready_pods(kube, "lock-keeper")
        if p["metadata"]["name"] != own
    ]
    for other in others:
        done = _patch(api, other, {"annotations": {COST: "-1000"}})
        assert done.status_code == 403, f"{other}: {done.status_code} {done.text}"
        assert f"only its own pod (its token is bound to {own}" in done.text, done.text


@pytest.mark.parametrize(
    ("metadata", "wanted"),
    [
        ({"labels": {"app.kubernetes.io/name": "redis"}}, "nothing of a pod but"),
        ({"annotations": {COST: "1", "example.com/other": "x"}}, "no annotation but"),
        ({"finalizers": ["example.com/hold"]}, "nothing of a pod but"),
    ],
)
def test_the_stream_token_may_change_nothing_else_of_its_own_pod(
    stream_api: tuple[str, httpx.Client], metadata: dict[str, Any], wanted: str
) -> None:
    """A label, another annotation, a finalizer on its own pod: refused."""
    own, api = stream_api
    done = _patch(api, own, metadata)
    assert done.status_code == 403, done.text
    assert wanted in done.text, done.text


def test_https_through_the_gateway_with_the_local_ca_only() -> None:
    """The Gateway answers HTTPS with a certificate the local Gateway CA signed, for
    127.0.0.1; a client trusting only the public CAs refuses it."""
    with httpx.Client(base_url=GATEWAY, verify=tls(), timeout=30) as http:
        assert http.get("/instance").status_code == 200
    with httpx.Client(base_url=GATEWAY, timeout=30) as http, pytest.raises(httpx.ConnectError):
        http.get("/instance")


@pytest.mark.parametrize("path", ["/main/profiles?limit=1", "/", "/stream/u/p?session=s"])
def test_plain_http_redirects_to_https(path: str) -> None:
    """Port 80 serves nothing: every path is a 301 to the same URL over HTTPS."""
    with httpx.Client(base_url=GATEWAY_HTTP, timeout=30) as http:
        done = http.get(path)
    assert done.status_code == 301, done.text
    assert done.headers["location"] == f"https://127.0.0.1{path}"


def test_the_access_log_records_requests_without_their_access_token(kube: Kube) -> None:
    """A request with ?access_token= is logged by the Gateway (its host is in the line) and
    the token is not."""
    host, token = f"edge-{uuid.uuid4().hex[:10]}", f"secret-{uuid.uuid4().hex}"
    with httpx.Client(base_url=GATEWAY, verify=tls(), timeout=30) as http:
        done = http.get(
            "/main/profiles", params={"limit": 1, "access_token": token}, headers={"Host": host}
        )
        assert done.status_code == 200, done.text

    def logged() -> list[str]:
        out = kube.run(
            "-n", "traefik", "logs", "-l", "app.kubernetes.io/name=traefik", "--tail=-1",
            "--prefix=false", "--max-log-requests=9",
        ).stdout  # fmt: skip
        assert token not in out, "the access token is in the Gateway's log"
        return [line for line in out.splitlines() if host in line]

    (line,) = wait_for("the request in the access log", logged, 30, every=1)
    entry = json.loads(line)
    assert entry["RequestHost"] == host
    assert entry["DownstreamStatus"] == 200
    assert "RequestPath" not in entry


def test_a_production_start_with_the_dev_secrets_stops_in_one_line(kube: Kube) -> None:
    """`kubescaler base` in the base pod (the dev overlay's placeholder Secret in its env) with
    KUBESCALER_ENVIRONMENT=production: exit 2, one line naming the variable."""
    done = kube.run(
        "-n", NAMESPACE, "exec", "deploy/base", "-c", "base", "--",
        "env", "KUBESCALER_ENVIRONMENT=production", "kubescaler", "base", "--port", "18081",
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.startswith("kubescaler")]
    assert lines == [
        "kubescaler base: KUBESCALER_ADMIN_TOKEN is a placeholder (contains CHANGE-ME): "
        "KUBESCALER_ENVIRONMENT=production refuses placeholder secrets; set a generated one "
        "(docs/security.md)"
    ], done.stderr
