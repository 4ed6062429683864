"""What the local cluster runs before kubescaler: the pieces a managed cluster comes with.

- local PersistentVolumes (hostPath folders under the run folder) and a default StorageClass,
- CoreDNS (cluster names only: it forwards nowhere, there is no upstream DNS here),
- metrics-server (CPU and memory for ``kubectl top`` and main's CPU HPA), from its module's
  own manifests,
- KEDA (operator and metrics adapter) from its module's own ``config/`` manifests,
- the Gateway API CRDs (standard channel) and Traefik as their implementation: a pod on the
  host network whose entry point listens on 127.0.0.1 only.

Each is a kustomization written under ``<run>/addons/<name>`` and applied with ``kubectl
apply -k --server-side``; the upstream manifests are used as published, patched only where
this machine differs (local images, never pulled; KEDA's admission webhooks left out).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kubescaler_dev.cluster import layout as net
from kubescaler_dev.cluster.versions import COREDNS, KEDA, METRICS_SERVER, TRAEFIK

IMAGES = {
    "coredns": f"kubescaler.local/coredns:{COREDNS}",
    "metrics-server": f"kubescaler.local/metrics-server:{METRICS_SERVER}",
    "keda": f"kubescaler.local/keda:{KEDA}",
    "keda-adapter": f"kubescaler.local/keda-metrics-apiserver:{KEDA}",
    "traefik": f"kubescaler.local/traefik:{TRAEFIK}",
}
PERSISTENT_VOLUMES = 6
GATEWAY_CLASS = "traefik"


def _dump(docs: list[dict[str, object]]) -> str:
    return "\n---\n".join(json.dumps(doc, indent=2) for doc in docs) + "\n"


def _write(dir: Path, files: dict[str, str]) -> Path:
    shutil.rmtree(dir, ignore_errors=True)
    dir.mkdir(parents=True)
    for name, text in files.items():
        (dir / name).write_text(text)
    return dir


def _copy_tree(source: Path, target: Path) -> None:
    """Copy a read-only module folder into a writable one (Go's module cache is read-only)."""
    shutil.copytree(source, target, copy_function=shutil.copyfile)


def storage(dir: Path, volumes: Path) -> Path:
    """A default StorageClass and hostPath PersistentVolumes for the StatefulSets' claims."""
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
    for i in range(PERSISTENT_VOLUMES):
        folder = volumes / f"pv-{i}"
        folder.mkdir(parents=True, exist_ok=True)
        # hostPath folders get no fsGroup: open to the pods' non-root users
        folder.chmod(0o777)
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"local-pv-{i}"},
                "spec": {
                    "capacity": {"storage": "10Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "local",
                    "hostPath": {"path": str(folder), "type": "Directory"},
                },
            }
        )
    return _write(
        dir, {"storage.yaml": _dump(docs), "kustomization.yaml": _kustomization(["storage.yaml"])}
    )


def _bind_cluster_role(role: str, account: str, namespace: str) -> dict[str, object]:
    """A ClusterRoleBinding of ``role`` (same name) to one ServiceAccount."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }


def _kustomization(resources: list[str], extra: dict[str, object] | None = None) -> str:
    return json.dumps(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": resources,
            **(extra or {}),
        },
        indent=2,
    )


COREFILE = f""".:1053 {{
    errors
    health {{
        lameduck 2s
    }}
    ready
    kubernetes {net.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus :9153
    cache 30
    loop
    reload
}}
"""


def coredns(dir: Path) -> Path:
    """CoreDNS for cluster names (port 1053 in the pod: its image runs as non-root)."""
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
        _bind_cluster_role("system:coredns", "coredns", "kube-system"),
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
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
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
    return _write(
        dir,
        {
            "coredns.yaml": _dump(docs),
            "kustomization.yaml": _kustomization(["coredns.yaml"], {"namespace": "kube-system"}),
        },
    )


def metrics_server(dir: Path, source: Path) -> Path:
    """metrics-server from its module's manifests; it checks the kubelet's certificate against
    the cluster CA (the service-account volume carries it) instead of skipping TLS checks."""
    shutil.rmtree(dir, ignore_errors=True)
    dir.mkdir(parents=True)
    _copy_tree(source / "manifests" / "base", dir / "upstream")
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
        _kustomization(
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
                    }
                ],
            },
        )
    )
    return dir


def keda(dir: Path, source: Path) -> Path:
    """KEDA's operator and metrics adapter from its module's ``config/``; the admission
    webhooks (another binary, an optional check of ScaledObjects) are left out."""
    shutil.rmtree(dir, ignore_errors=True)
    dir.mkdir(parents=True)
    _copy_tree(source / "config", dir / "config")
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
        _kustomization(
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
                ],
            },
        )
    )
    return dir


def gateway_crds(dir: Path, source: Path) -> Path:
    shutil.rmtree(dir, ignore_errors=True)
    dir.mkdir(parents=True)
    crds = sorted((source / "config" / "crd" / "standard").glob("*.yaml"))
    for crd in crds:
        shutil.copyfile(crd, dir / crd.name)
    (dir / "kustomization.yaml").write_text(_kustomization([c.name for c in crds]))
    return dir


def traefik(dir: Path) -> Path:
    """Traefik as the Gateway API implementation: GatewayClass ``traefik``, a pod on the host
    network whose ``web`` entry point (the Gateway's port 80) listens on 127.0.0.1 only."""
    labels = {"app.kubernetes.io/name": "traefik"}
    gateway_group = "gateway.networking.k8s.io"
    docs: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "traefik"}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "traefik", "namespace": "traefik"},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "traefik-gateway"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["namespaces", "services", "secrets", "configmaps", "nodes"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": [gateway_group],
                    "resources": [
                        "gatewayclasses",
                        "gateways",
                        "httproutes",
                        "grpcroutes",
                        "referencegrants",
                        "backendtlspolicies",
                        "tcproutes",
                        "tlsroutes",
                    ],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": [gateway_group],
                    "resources": [
                        "gatewayclasses/status",
                        "gateways/status",
                        "httproutes/status",
                        "grpcroutes/status",
                        "backendtlspolicies/status",
                        "tcproutes/status",
                        "tlsroutes/status",
                    ],
                    "verbs": ["update", "patch"],
                },
            ],
        },
        _bind_cluster_role("traefik-gateway", "traefik", "traefik"),
        {
            "apiVersion": f"{gateway_group}/v1",
            "kind": "GatewayClass",
            "metadata": {"name": GATEWAY_CLASS},
            "spec": {"controllerName": "traefik.io/gateway-controller"},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "traefik", "namespace": "traefik", "labels": labels},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},  # one host port: never two at once
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "traefik",
                        "hostNetwork": True,
                        "dnsPolicy": "ClusterFirstWithHostNet",
                        "containers": [
                            {
                                "name": "traefik",
                                "image": IMAGES["traefik"],
                                "args": [
                                    f"--entryPoints.web.address=127.0.0.1:{net.GATEWAY_PORT}",
                                    # SSE streams last as long as the client stays
                                    "--entryPoints.web.transport.respondingTimeouts.readTimeout=0",
                                    "--entryPoints.web.transport.respondingTimeouts.idleTimeout=0",
                                    "--entryPoints.traefik.address=127.0.0.1:9080",
                                    "--ping=true",
                                    "--providers.kubernetesGateway=true",
                                    "--providers.kubernetesGateway.statusAddress.ip=127.0.0.1",
                                    "--log.level=INFO",
                                ],
                                "readinessProbe": {
                                    "httpGet": {"host": "127.0.0.1", "path": "/ping", "port": 9080}
                                },
                                "livenessProbe": {
                                    "httpGet": {"host": "127.0.0.1", "path": "/ping", "port": 9080}
                                },
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"memory": "256Mi"},
                                },
                                "securityContext": {
                                    # binds port 80 of the host's loopback
                                    "runAsUser": 0,
                                    "runAsNonRoot": False,
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {
                                        "drop": ["ALL"],
                                        "add": ["NET_BIND_SERVICE"],
                                    },
                                },
                                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                            }
                        ],
                        "volumes": [{"name": "tmp", "emptyDir": {}}],
                    },
                },
            },
        },
    ]
    return _write(
        dir, {"traefik.yaml": _dump(docs), "kustomization.yaml": _kustomization(["traefik.yaml"])}
    )
