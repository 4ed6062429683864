"""The entry point: the Gateway API CRDs and Traefik as their implementation, on every node;
Traefik is also the cluster's default Ingress controller (the classic overlay's Ingress).

Traefik runs as a DaemonSet on each node's network, so the Gateway answers on every node's
address; the machine's load balancer (loadbalancer.py) spreads 127.0.0.1:80 and :443 over the
nodes whose Traefik answers its health check, as a cloud load balancer does in front of a
cluster.

Entry points: ``web`` (80) and ``websecure`` (443, TLS with the certificate of the Secret the
Gateway's HTTPS listener or the Ingress names; app.py makes it from pki.py's Gateway CA). On
``web`` the Gateway's own redirect route answers; a catch-all of the lowest priority redirects
whatever else comes (the classic overlay's Ingress, which serves on ``websecure`` only) to
HTTPS. The access log (JSON, on stdout) drops ``RequestPath``: Traefik logs the path with its
query string, and a stream's ``?access_token=`` must not land in a log; ``RouterName`` still
says which route answered, headers are dropped (Traefik's default).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from kubescaler_dev.cluster import layout as net
from kubescaler_dev.cluster.kustomize import AddOn, bind_cluster_role, dump, kustomization, write
from kubescaler_dev.cluster.versions import IMAGES

GATEWAY_CLASS = "traefik"
PING = net.GATEWAY_PING_PORT


def gateway_crds(dir: Path, source: Path) -> AddOn:
    """The Gateway API CRDs (standard channel) from their module's source."""
    shutil.rmtree(dir, ignore_errors=True)
    dir.mkdir(parents=True)
    crds = sorted((source / "config" / "crd" / "standard").glob("*.yaml"))
    for crd in crds:
        shutil.copyfile(crd, dir / crd.name)
    (dir / "kustomization.yaml").write_text(kustomization([c.name for c in crds]))
    return AddOn("Gateway API CRDs", dir)


def traefik(dir: Path) -> AddOn:
    """Traefik as the Gateway API implementation: GatewayClass ``traefik``, one pod per node on
    the node's network (its ``web`` entry point is the Gateway's port 80 on the node's
    address), behind the machine's load balancer (loadbalancer.py)."""
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
                    "apiGroups": ["networking.k8s.io"],
                    "resources": ["ingresses", "ingressclasses"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["networking.k8s.io"],
                    "resources": ["ingresses/status"],
                    "verbs": ["update"],
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
        bind_cluster_role("traefik-gateway", "traefik", "traefik"),
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {
                "name": "traefik",
                "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"},
            },
            "spec": {"controller": "traefik.io/ingress-controller"},
        },
        {
            "apiVersion": f"{gateway_group}/v1",
            "kind": "GatewayClass",
            "metadata": {"name": GATEWAY_CLASS},
            "spec": {"controllerName": "traefik.io/gateway-controller"},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "traefik", "namespace": "traefik", "labels": labels},
            "spec": {
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
                                    f"--entryPoints.web.address=:{net.GATEWAY_PORT}",
                                    f"--entryPoints.websecure.address=:{net.GATEWAY_TLS_PORT}",
                                    # SSE streams last as long as the client stays
                                    *(
                                        f"--entryPoints.{ep}.transport.respondingTimeouts."
                                        f"{timeout}=0"
                                        for ep in ("web", "websecure")
                                        for timeout in ("readTimeout", "idleTimeout")
                                    ),
                                    # HTTP -> HTTPS for what no route of web claims
                                    *(
                                        f"--entryPoints.web.http.redirections.entryPoint.{k}={v}"
                                        for k, v in (
                                            ("to", "websecure"),
                                            ("scheme", "https"),
                                            ("priority", "1"),
                                        )
                                    ),
                                    "--accesslog=true",
                                    "--accesslog.format=json",
                                    "--accesslog.fields.names.RequestPath=drop",
                                    f"--entryPoints.traefik.address=:{net.GATEWAY_PING_PORT}",
                                    "--ping=true",
                                    "--providers.kubernetesGateway=true",
                                    "--providers.kubernetesGateway.statusAddress.ip=127.0.0.1",
                                    # the classic overlay's plain Ingress (the default class)
                                    "--providers.kubernetesIngress=true",
                                    "--providers.kubernetesIngress.ingressEndpoint.ip=127.0.0.1",
                                    "--log.level=INFO",
                                ],
                                "readinessProbe": {
                                    "httpGet": {"host": "127.0.0.1", "path": "/ping", "port": PING}
                                },
                                "livenessProbe": {
                                    "httpGet": {"host": "127.0.0.1", "path": "/ping", "port": PING}
                                },
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"memory": "256Mi"},
                                },
                                "securityContext": {
                                    # binds ports 80 and 443 of the node's network
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
    files = {"traefik.yaml": dump(docs), "kustomization.yaml": kustomization(["traefik.yaml"])}
    return AddOn("Traefik", write(dir, files), (("traefik", "daemonset/traefik"),))
