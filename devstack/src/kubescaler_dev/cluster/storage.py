"""Local PersistentVolumes: a default StorageClass and, on every node, folders of its disk as
``local`` volumes bound to that node (a StatefulSet's pod comes back where its data is; a lost
node's volumes wait for it, as a real disk does)."""

from __future__ import annotations

from pathlib import Path

from kubescaler_dev.cluster.kustomize import AddOn, dump, kustomization, write
from kubescaler_dev.cluster.layout import NodeLayout

#: volumes per node: the production overlay puts a Cassandra, a Redlock master and a Redis on
#: one node, each with a claim, and the dev overlay all of its claims on one
PER_NODE = 6


def storage(dir: Path, nodes: list[NodeLayout]) -> AddOn:
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": "local",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Retain",
        }
    ]
    for node in nodes:
        for i in range(PER_NODE):
            folder = node.volumes / f"pv-{i}"
            folder.mkdir(parents=True, exist_ok=True)
            # local volumes get no fsGroup change: open to the pods' non-root users
            folder.chmod(0o777)
            docs.append(_volume(f"{node.net.name}-pv-{i}", folder, node.net.name))
    return AddOn(
        "storage",
        write(
            dir, {"storage.yaml": dump(docs), "kustomization.yaml": kustomization(["storage.yaml"])}
        ),
    )


def _volume(name: str, folder: Path, node: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "100Gi"},  # nominal: a folder of the node's disk
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "local",
            "local": {"path": str(folder)},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [node],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }
