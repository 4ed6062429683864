"""KEDA (operator and metrics adapter) from its module's own ``config/`` manifests: the stream
and lock-keeper autoscalers of the manifests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kubescaler_dev.cluster.kustomize import AddOn, copy_tree, kustomization, tolerate_a_lost_node
from kubescaler_dev.cluster.versions import IMAGES, KEDA


def keda(dir: Path, source: Path) -> AddOn:
    """KEDA's operator and metrics adapter from its module's ``config/``; the admission
    webhooks (another binary, an optional check of ScaledObjects) are left out."""
    shutil.rmtree(dir, ignore_errors=True)
    dir.mkdir(parents=True)
    copy_tree(source / "config", dir / "config")
    never_pull = {
        "op": "replace",
        "path": "/spec/template/spec/containers/0/imagePullPolicy",
        "value": "IfNotPresent",
    }
    operator_patch = [
        never_pull,
        {
            "op": "add",
            "path": "/spec/template/spec/containers/0/args/-",
            "value": "--enable-webhook-patching=false",
        },
    ]
    (dir / "kustomization.yaml").write_text(
        kustomization(
            [
                "config/crd",
                "config/general",
                "config/rbac",
                "config/manager",
                "config/metrics-server",
                "config/service_account",
            ],
            {
                "images": [
                    {
                        "name": "ghcr.io/kedacore/keda",
                        "newName": IMAGES["keda"].split(":")[0],
                        "newTag": KEDA,
                    },
                    {
                        "name": "ghcr.io/kedacore/keda-metrics-apiserver",
                        "newName": IMAGES["keda-adapter"].split(":")[0],
                        "newTag": KEDA,
                    },
                ],
                "patches": [
                    {
                        "target": {"kind": "Deployment", "name": "keda-operator"},
                        "patch": json.dumps(operator_patch),
                    },
                    {
                        "target": {"kind": "Deployment", "name": "keda-metrics-apiserver"},
                        "patch": json.dumps([never_pull]),
                    },
                    tolerate_a_lost_node("Deployment", "keda-operator"),
                    tolerate_a_lost_node("Deployment", "keda-metrics-apiserver"),
                ],
            },
        )
    )
    return AddOn(
        "KEDA",
        dir,
        (("keda", "deployment/keda-operator"), ("keda", "deployment/keda-metrics-apiserver")),
    )
