"""metrics-server from its module's own manifests (CPU and memory for ``kubectl top`` and
main's CPU HPA)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kubescaler_dev.cluster.kustomize import AddOn, copy_tree, kustomization, tolerate_a_lost_node
from kubescaler_dev.cluster.versions import IMAGES, METRICS_SERVER


def metrics_server(dir: Path, source: Path) -> AddOn:
    """metrics-server from its module's manifests; it checks the kubelet's certificate against
    the cluster CA (the service-account volume carries it) instead of skipping TLS checks."""
    shutil.rmtree(dir, ignore_errors=True)
    dir.mkdir(parents=True)
    copy_tree(source / "manifests" / "base", dir / "upstream")
    patch = [
        {
            "op": "add",
            "path": "/spec/template/spec/containers/0/args/-",
            "value": "--kubelet-certificate-authority="
            "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
        },
        {
            "op": "replace",
            "path": "/spec/template/spec/containers/0/args/2",
            "value": "--kubelet-preferred-address-types=InternalIP",
        },
    ]
    (dir / "kustomization.yaml").write_text(
        kustomization(
            ["upstream"],
            {
                "images": [
                    {
                        "name": "gcr.io/k8s-staging-metrics-server/metrics-server",
                        "newName": IMAGES["metrics-server"].split(":")[0],
                        "newTag": METRICS_SERVER,
                    }
                ],
                "patches": [
                    {
                        "target": {"kind": "Deployment", "name": "metrics-server"},
                        "patch": json.dumps(patch),
                    },
                    tolerate_a_lost_node("Deployment", "metrics-server"),
                ],
            },
        )
    )
    return AddOn("metrics-server", dir, (("kube-system", "deployment/metrics-server"),))
