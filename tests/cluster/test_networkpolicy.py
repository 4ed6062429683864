"""The NetworkPolicies as enforced on the real cluster (kube-router's firewall on every node,
devstack/src/kubescaler_dev/cluster/netpol.py), seen from a hostile pod.

An intruder pod in kubescaler's namespace, with none of the labels the policies admit, tries a
TCP connection to every server of the namespace and to the Kubernetes API server: Redis,
Cassandra, the lock-keeper and base (ingress denied) and the API server (egress denied) must
refuse it or stay silent, main and stream must answer. Then the namespace's policies are
deleted and the same pod must reach all of them - which proves the first half was the policies'
doing, not a server that was down - and the policies are put back.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubehelp import Kube, ready_pods, wait_for

from kubescaler_dev.cluster.stack import NAMESPACE
from kubescaler_dev.cluster.versions import IMAGES

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

#: app label -> the port the intruder tries on its first ready pod
DENIED = {"redis": 6379, "cassandra": 9042, "lock-keeper": 8085, "base": 8081}
ADMITTED = {"main": 8082, "stream": 8090}
#: out of the namespace: only stream and Prometheus may reach it (egress)
API_SERVER = "api-server"

INTRUDER = "intruder"

#: one TCP connect per target, all at once, each given 3 s: "open", "refused" or "timeout"
_PROBE = """
import concurrent.futures, json, socket, sys

def probe(target):
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"error {exc}"

targets = sys.argv[1:]
with concurrent.futures.ThreadPoolExecutor(len(targets)) as pool:
    print(json.dumps(dict(zip(targets, pool.map(probe, targets)))))
"""


def _intruder_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": INTRUDER, "labels": {"app.kubernetes.io/name": INTRUDER}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65534,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": INTRUDER,
                    "image": IMAGES["kubescaler"],
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "900"],
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def _targets(kube: Kube) -> dict[str, str]:
    """app -> ``ip:port`` of one ready pod of it; "api-server" -> the `kubernetes` Service."""
    found = {}
    for app, port in {**DENIED, **ADMITTED}.items():
        pods = wait_for(f"{app} ready", lambda app=app: ready_pods(kube, app), 300)
        found[app] = f"{pods[0]['status']['podIP']}:{port}"
    api = kube.json("-n", "default", "get", "service", "kubernetes")["spec"]
    found[API_SERVER] = f"{api['clusterIP']}:{api['ports'][0]['port']}"
    return found


def _probe(kube: Kube, targets: dict[str, str]) -> dict[str, str]:
    done = kube.run(
        "-n", NAMESPACE, "exec", INTRUDER, "--", "python3", "-c", _PROBE, *targets.values()
    )  # fmt: skip
    by_target = json.loads(done.stdout)
    return {app: by_target[target] for app, target in targets.items()}


@pytest.fixture
def intruder(kube: Kube) -> Any:
    kube.run("-n", NAMESPACE, "delete", "pod", INTRUDER, "--ignore-not-found", "--wait=true")
    kube.run("-n", NAMESPACE, "apply", "-f", "-", input=json.dumps(_intruder_manifest()))
    kube.run("-n", NAMESPACE, "wait", "--for=condition=Ready", f"pod/{INTRUDER}", "--timeout=120s")
    yield
    kube.run("-n", NAMESPACE, "delete", "pod", INTRUDER, "--ignore-not-found", "--wait=false")


def _policies(kube: Kube) -> list[dict[str, Any]]:
    """The namespace's NetworkPolicies, as objects that can be created again."""
    items = kube.ns("get", "networkpolicy")["items"]
    for item in items:
        meta = item["metadata"]
        item["metadata"] = {
            k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta
        }
        item.pop("status", None)
    return items


@pytest.mark.usefixtures("intruder")
def test_a_pod_without_the_policies_labels_reaches_only_main_and_stream(kube: Kube) -> None:
    targets = _targets(kube)
    seen = _probe(kube, targets)
    for app in [*DENIED, API_SERVER]:
        assert seen[app] in ("refused", "timeout"), (app, targets[app], seen)
    for app in ADMITTED:
        assert seen[app] == "open", (app, targets[app], seen)

    # the same pod, the same servers, no policies: everything answers (so the test can fail)
    saved = _policies(kube)
    assert {"default-deny", "redis", "cassandra", "base"} <= {p["metadata"]["name"] for p in saved}
    kube.run("-n", NAMESPACE, "delete", "networkpolicy", "--all", "--wait=true")
    try:
        wait_for(
            "every server open to the intruder once the policies are gone",
            lambda: all(v == "open" for v in _probe(kube, targets).values()),
            60,
            every=1,
        )
    finally:
        kube.run(
            "-n", NAMESPACE, "apply", "--server-side", "--force-conflicts", "-f", "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": saved}),
        )  # fmt: skip
    # and back: the intruder is shut out again
    wait_for(
        "the intruder shut out again once the policies are back",
        lambda: all(
            v in ("refused", "timeout") for app, v in _probe(kube, targets).items() if app in DENIED
        ),
        60,
        every=1,
    )
