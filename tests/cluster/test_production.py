"""overlays/production as written (local-production swaps only what cannot exist here) on three
real nodes: its stores one per node, Cassandra at a quorum of three replicas, auth on."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from kubehelp import GATEWAY, Kube, tls
from production import Production, node_of

from kubescaler_dev.cluster.app import NAMESPACE

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]


def test_the_stores_run_one_per_node(production: Production, kube: Kube) -> None:
    """Three Cassandra pods and three Redlock masters, each set on three different nodes
    (required anti-affinity); every stateless service on two nodes at least (preferred
    anti-affinity, so one lost node leaves each of them answering)."""
    nodes = {i["metadata"]["name"] for i in kube.json("get", "nodes")["items"]}
    assert len(nodes) == 3
    for store in ("cassandra", "redis-lock"):
        placed = {node_of(kube, f"{store}-{i}") for i in range(3)}
        assert placed == nodes, (store, placed)
    for app in ("base", "main", "stream", "lock-keeper"):
        pods = kube.ns("get", "pods", "-l", f"app.kubernetes.io/name={app}")["items"]
        assert len({p["spec"]["nodeName"] for p in pods}) >= 2, app


def test_cassandra_keeps_three_replicas_and_reads_and_writes_at_a_quorum(
    production: Production, kube: Kube
) -> None:
    """base's keyspace has replication factor 3 over three live nodes, and base runs every
    query at LOCAL_QUORUM: what it wrote is in the next read on any node. The roles are
    replicated like the data (system_auth: 3 in the data centre), logged in as base's role."""
    script = (
        "import json, os; from cassandra.cluster import Cluster; "
        "from cassandra.auth import PlainTextAuthProvider as P; "
        "e = os.environ; "
        "s = Cluster(['cassandra'], protocol_version=5, auth_provider=P("
        "e['KUBESCALER_CASSANDRA_USERNAME'], e['KUBESCALER_CASSANDRA_PASSWORD'])).connect(); "
        "q = 'SELECT replication FROM system_schema.keyspaces WHERE keyspace_name=%s'; "
        "ks = s.execute(q, ['kubescaler']).one().replication; "
        "auth = s.execute(q, ['system_auth']).one().replication; "
        "peers = len(list(s.execute('SELECT peer FROM system.peers'))); "
        "print(json.dumps({'rf': ks['replication_factor'], 'peers': peers, "
        "'auth': auth.get('dc1'), 'cl': e['KUBESCALER_CASSANDRA_CONSISTENCY']}))"
    )
    done = kube.run(
        "-n", NAMESPACE, "exec", "deploy/base", "-c", "base", "--", "python", "-c", script
    )  # fmt: skip
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"rf": "3", "peers": 2, "auth": "3", "cl": "LOCAL_QUORUM"}


def test_auth_is_on_through_the_gateway(production: Production) -> None:
    """Production's auth mode: no token is a 401, a user's token reads its own /login."""
    user, _ = production.pairs[0]
    with httpx.Client(base_url=GATEWAY, verify=tls(), timeout=30) as http:
        assert http.get("/main/profiles").status_code == 401
        assert http.get(f"/main/login/{user}").status_code == 401
        mine = http.get(f"/main/login/{user}", headers=production.headers(user))
        assert mine.status_code == 200, mine.text


def test_every_pod_runs_hardened_under_the_restricted_pod_security_standard(
    production: Production, kube: Kube
) -> None:
    """The namespace enforces Pod Security `restricted`; every pod of production was admitted."""
    ns = kube.json("get", "namespace", NAMESPACE)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = kube.ns("get", "pods")["items"]
    assert pods
    assert all(p["status"]["phase"] in ("Running", "Succeeded") for p in pods), [
        (p["metadata"]["name"], p["status"]["phase"]) for p in pods
    ]


def test_the_keepers_see_every_master_vote_and_log_json(production: Production, kube: Kube) -> None:
    """What the alerts read, from a real keeper: each of the three masters up and, within a
    lock's lifetime of the deployment, voting (a master that came up after the keepers had
    started the others joins as one back empty: it abstains one lifetime, 60 s, then catches
    up), the backlog's oldest age; and its log lines are JSON objects naming the service and
    the pod (the overlay's KUBESCALER_LOG_FORMAT)."""
    script = (
        "import urllib.request as u; "
        "print(u.urlopen('http://127.0.0.1:8085/metrics', timeout=5).read().decode())"
    )

    def samples() -> dict[str, float]:
        done = kube.run(
            "-n", NAMESPACE, "exec", "deploy/lock-keeper", "-c", "lock-keeper", "--",
            "python", "-c", script,
        )  # fmt: skip
        return {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in done.stdout.splitlines()
            if line.startswith(("kubescaler_lock_master_", "kubescaler_lock_oldest_pending"))
        }

    voting = [f'kubescaler_lock_master_voting{{master="{m}"}}' for m in range(3)]
    deadline = time.monotonic() + 90
    seen = samples()
    while any(seen.get(v) != 1 for v in voting) and time.monotonic() < deadline:
        time.sleep(3)
        seen = samples()
    for m in range(3):
        assert seen.get(f'kubescaler_lock_master_up{{master="{m}"}}') == 1, seen
    assert all(seen.get(v) == 1 for v in voting), seen
    assert "kubescaler_lock_oldest_pending_seconds" in seen
    logs = kube.run("-n", NAMESPACE, "logs", "deploy/lock-keeper", "-c", "lock-keeper")
    lines = [json.loads(line) for line in logs.stdout.splitlines() if line.strip()]
    assert lines, "the keeper logged nothing"
    assert {line["service"] for line in lines} == {"lock-keeper"}
    assert all(line["instance"].startswith("lock-keeper-") for line in lines)
