"""The classic overlay's metrics adapter (test tooling, devstack/metrics-adapter): the Pods
metric ``connections`` and the external metric ``kubescaler_lock_commands_pending`` that the
plain HPAs of ``manifests/components/prometheus-adapter`` read, in place of prometheus-adapter.

:func:`custom_metrics` writes the add-on: the adapter in ``kube-system`` (its ServiceAccount,
the usual aggregated-API-server RBAC, read access to pods and namespaces, a Service) asking
the overlay's in-cluster Prometheus, its rules a ConfigMap generated from the overlay's own
``adapter-rules.yaml`` (read when the add-on is written, so that file is the only copy; a
change rolls the pod, which reads its rules once), and three APIServices:
``custom.metrics.k8s.io`` v1beta2 and v1beta1 and ``external.metrics.k8s.io`` v1beta1.

KEDA's metrics adapter claims ``v1beta1.external.metrics.k8s.io`` too, and one APIService
object can point at one server only, so the two are switched, never applied together:

- :func:`use_adapter` deletes that APIService (KEDA's, with the CA its operator put in it)
  and applies this add-on, which creates it again pointing at the adapter; KEDA keeps running
  (the classic overlay has no ScaledObjects for it to serve);
- :func:`restore_keda` deletes everything this add-on made and applies KEDA's add-on again;
  KEDA's operator puts its CA back into the recreated APIService on its own.

While the adapter holds the APIService, KEDA's operator logs that it cannot put its CA in it:
the API server refuses a caBundle beside ``insecureSkipTLSVerify`` (below), which is what keeps
it from pointing the aggregator's trust at KEDA's certificate.
"""

from __future__ import annotations

from pathlib import Path

from kubescaler_dev.cluster.app import NAMESPACE as APP_NAMESPACE
from kubescaler_dev.cluster.images import ROOT
from kubescaler_dev.cluster.kubectl import Kubectl
from kubescaler_dev.cluster.kustomize import AddOn, bind_cluster_role, dump, kustomization, write
from kubescaler_dev.cluster.versions import IMAGES

NAME = "metrics-adapter"
NAMESPACE = "kube-system"
#: the classic overlay's rule file, the adapter's only configuration
RULES = ROOT / "manifests" / "components" / "prometheus-adapter" / "adapter-rules.yaml"
#: the Service of components/in-cluster-prometheus, in the overlay's namespace
PROMETHEUS_URL = f"http://prometheus.{APP_NAMESPACE}.svc:9090"
EXTERNAL_APISERVICE = "v1beta1.external.metrics.k8s.io"
#: (group, version, versionPriority): what the library serves; v1beta2 is preferred
APISERVICES = (
    ("custom.metrics.k8s.io", "v1beta2", 200),
    ("custom.metrics.k8s.io", "v1beta1", 100),
    ("external.metrics.k8s.io", "v1beta1", 100),
)
#: prometheus-adapter's name: the in-cluster Prometheus' NetworkPolicy admits pods so labelled
LABELS = {"app.kubernetes.io/name": "prometheus-adapter"}
PORT = 6443


def custom_metrics(dir: Path) -> AddOn:
    """The adapter add-on under ``dir``, its rules read from the overlay's file now."""
    files = {
        f"{NAME}.yaml": dump([*_rbac(), _deployment(), _service(), *_apiservices()]),
        "adapter-rules.yaml": RULES.read_text(),
        "kustomization.yaml": kustomization(
            [f"{NAME}.yaml"],
            {
                "namespace": NAMESPACE,
                "configMapGenerator": [
                    {"name": f"{NAME}-rules", "files": ["config.yaml=adapter-rules.yaml"]}
                ],
            },
        ),
    }
    return AddOn("metrics adapter", write(dir, files), ((NAMESPACE, f"deployment/{NAME}"),))


def use_adapter(kubectl: Kubectl, adapter: AddOn) -> None:
    """Serve the custom and external metrics APIs from the adapter instead of KEDA."""
    kubectl("delete", "apiservice", EXTERNAL_APISERVICE, "--ignore-not-found",
            what="take external.metrics.k8s.io from KEDA")  # fmt: skip
    kubectl.apply(str(adapter.folder), what=f"apply the {adapter.name}")
    for namespace, workload in adapter.rollouts:
        kubectl.rollout(namespace, workload)
    kubectl(
        "wait", "--for=condition=Available", "--timeout=120s",
        *(f"apiservice/{version}.{group}" for group, version, _ in APISERVICES),
        what="the metrics APIs to be available",
    )  # fmt: skip


def restore_keda(kubectl: Kubectl, adapter: AddOn, keda: AddOn) -> None:
    """Remove the adapter and its APIServices; give external.metrics.k8s.io back to KEDA."""
    kubectl("delete", "-k", str(adapter.folder), "--ignore-not-found",
            what=f"delete the {adapter.name}")  # fmt: skip
    kubectl.apply(str(keda.folder), what=f"apply {keda.name}")
    kubectl("wait", "--for=condition=Available", "--timeout=120s",
            f"apiservice/{EXTERNAL_APISERVICE}", what="KEDA's external metrics API")  # fmt: skip


def _rbac() -> list[dict[str, object]]:
    reader = f"{NAME}-resource-reader"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME}},
        # SubjectAccessReviews and TokenReviews for the requests the aggregator forwards
        {
            **bind_cluster_role("system:auth-delegator", NAME, NAMESPACE),
            "metadata": {"name": f"{NAME}:system:auth-delegator"},
        },
        # the front proxy's client CA, from kube-system's extension-apiserver-authentication
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{NAME}-auth-reader", "namespace": "kube-system"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "extension-apiserver-authentication-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        # the pods an HPA's label selector names
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": reader},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "namespaces"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
        bind_cluster_role(reader, NAME, NAMESPACE),
    ]


def _deployment() -> dict[str, object]:
    health = {"scheme": "HTTPS", "port": "https"}  # always allowed, anonymous included
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "labels": LABELS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "serviceAccountName": NAME,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": NAME,
                            "image": IMAGES[NAME],
                            "imagePullPolicy": "IfNotPresent",
                            "args": [
                                f"--prometheus-url={PROMETHEUS_URL}",
                                "--config=/etc/adapter/config.yaml",
                                f"--secure-port={PORT}",
                                # its self-signed serving certificate, made at start-up
                                "--cert-dir=/tmp/serving-cert",
                            ],
                            "ports": [{"name": "https", "containerPort": PORT}],
                            "readinessProbe": {"httpGet": {"path": "/readyz", **health}},
                            "livenessProbe": {"httpGet": {"path": "/livez", **health}},
                            "resources": {
                                "requests": {"cpu": "20m", "memory": "64Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "rules", "mountPath": "/etc/adapter", "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "rules", "configMap": {"name": f"{NAME}-rules"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
                    ],
                },
            },
        },
    }


def _service() -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "labels": LABELS},
        "spec": {
            "selector": LABELS,
            "ports": [{"name": "https", "port": 443, "targetPort": "https"}],
        },
    }


def _apiservices() -> list[dict[str, object]]:
    """The aggregator's routes to the adapter. insecureSkipTLSVerify: the adapter serves a
    certificate it signs itself at start-up (no Secret or CA to manage for test tooling), only
    the kube-apiserver calls it, and a caBundle would be overwritten by KEDA's operator anyway
    (see the module's docstring); metrics-server's own manifests do the same."""
    return [
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": f"{version}.{group}", "labels": LABELS},
            "spec": {
                "group": group,
                "version": version,
                "service": {"name": NAME, "namespace": NAMESPACE, "port": 443},
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 100,
                "versionPriority": priority,
            },
        }
        for group, version, priority in APISERVICES
    ]
