"""What the add-ons share: each is a kustomization written under ``<run>/addons/<name>`` and
applied with ``kubectl apply -k --server-side``; upstream manifests are used as published,
patched only where this machine differs (local images, never pulled)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AddOn:
    """One add-on: its kustomization folder and the workloads to wait for (namespace, kind/name)."""

    name: str
    folder: Path
    rollouts: tuple[tuple[str, str], ...] = ()


def dump(docs: list[dict[str, object]]) -> str:
    return "\n---\n".join(json.dumps(doc, indent=2) for doc in docs) + "\n"


def write(dir: Path, files: dict[str, str]) -> Path:
    shutil.rmtree(dir, ignore_errors=True)
    dir.mkdir(parents=True)
    for name, text in files.items():
        (dir / name).write_text(text)
    return dir


def copy_tree(source: Path, target: Path) -> None:
    """Copy a read-only module folder into a writable one (Go's module cache is read-only)."""
    shutil.copytree(source, target, copy_function=shutil.copyfile)


def bind_cluster_role(role: str, account: str, namespace: str) -> dict[str, object]:
    """A ClusterRoleBinding of ``role`` (same name) to one ServiceAccount."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }


def kustomization(resources: list[str], extra: dict[str, object] | None = None) -> str:
    return json.dumps(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": resources,
            **(extra or {}),
        },
        indent=2,
    )


#: What a managed cluster does for its own add-ons so one lost node does not take them down:
#: their pods leave a NotReady node after 30 s (Kubernetes' default is 5 minutes).
MOVE_OFF_A_LOST_NODE = [
    {"key": f"node.kubernetes.io/{taint}", "operator": "Exists", "effect": "NoExecute",
     "tolerationSeconds": 30}
    for taint in ("unreachable", "not-ready")
]  # fmt: skip


def tolerate_a_lost_node(kind: str, name: str) -> dict[str, object]:
    """A kustomize patch giving one workload's pods MOVE_OFF_A_LOST_NODE."""
    op = {"op": "add", "path": "/spec/template/spec/tolerations", "value": MOVE_OFF_A_LOST_NODE}
    return {"target": {"kind": kind, "name": name}, "patch": json.dumps([op])}


def spread(labels: dict[str, str]) -> dict[str, object]:
    """Preferred anti-affinity: replicas on different nodes when there are enough of them."""
    term = {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": labels}}
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": term}
            ]
        }
    }
