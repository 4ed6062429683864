"""CoreDNS for cluster names only: it forwards nowhere (there is no upstream DNS here). Port
1053 in the pod (its image runs as non-root); the kube-dns Service answers on 53.

Records live 5 s (the kubernetes plugin's own default; kubeadm's Corefile says 30): a replaced
Cassandra pod's new address reaches base, which follows it by name, within that. With 30 s
it took up to 30 s after the pod's deletion (measured: 8.5 s after the new pod was Ready)."""

from __future__ import annotations

from pathlib import Path

from kubescaler_dev.cluster import layout as net
from kubescaler_dev.cluster.kustomize import (
    MOVE_OFF_A_LOST_NODE,
    AddOn,
    bind_cluster_role,
    dump,
    kustomization,
    spread,
    write,
)
from kubescaler_dev.cluster.versions import IMAGES

COREFILE = f""".:1053 {{
    errors
    health {{
        lameduck 2s
    }}
    ready
    kubernetes {net.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    prometheus :9153
    cache 30
    loop
    reload
}}
"""


def coredns(dir: Path, nodes: int = 1) -> AddOn:
    """Two replicas on different nodes when there are several (one lost node keeps DNS), each
    leaving a lost node after 30 s."""
    labels = {"k8s-app": "kube-dns"}
    docs: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        bind_cluster_role("system:coredns", "coredns", "kube-system"),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns"},
            "data": {"Corefile": COREFILE},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "labels": labels},
            "spec": {
                "replicas": 2 if nodes > 1 else 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "affinity": spread(labels),
                        "tolerations": MOVE_OFF_A_LOST_NODE,
                        "serviceAccountName": "coredns",
                        "priorityClassName": "system-cluster-critical",
                        "containers": [
                            {
                                "name": "coredns",
                                "image": IMAGES["coredns"],
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": 1053, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 1053, "protocol": "TCP"},
                                    {"name": "metrics", "containerPort": 9153},
                                ],
                                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}},
                                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                                "resources": {
                                    "requests": {"cpu": "20m", "memory": "32Mi"},
                                    "limits": {"memory": "128Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "labels": labels},
            "spec": {
                "selector": labels,
                "clusterIP": net.DNS_SERVICE_IP,
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": 1053, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "targetPort": 1053, "protocol": "TCP"},
                ],
            },
        },
    ]
    files = {
        "coredns.yaml": dump(docs),
        "kustomization.yaml": kustomization(["coredns.yaml"], {"namespace": "kube-system"}),
    }
    return AddOn("CoreDNS", write(dir, files), (("kube-system", "deployment/coredns"),))
