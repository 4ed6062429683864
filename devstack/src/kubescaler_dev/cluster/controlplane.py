"""The control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

They run as processes of this machine, in its own network namespace: etcd on 127.0.0.1, the
API server on the control plane's address on ``ksbr0`` (where every node reaches it), the two
controllers on 127.0.0.1. Built from Go modules (versions.py); started in this order, each
awaited on its health endpoint before the next.
"""

from __future__ import annotations

from kubescaler_dev.cluster import layout as net
from kubescaler_dev.cluster.component import Component, http_ok, https_ok, write_kubeconfig
from kubescaler_dev.cluster.layout import Layout
from kubescaler_dev.cluster.pki import Pki

#: how long a node may be silent before it is NotReady and its pods leave their Services
#: (Kubernetes' default is 50 s; the local cluster's node faults are tests: 30 s, which
#: still allows two missed 10 s heartbeats of a kubelet starved of CPU on two cores)
NODE_GRACE = "30s"


class Etcd(Component):
    def __init__(self, lay: Layout) -> None:
        client = f"http://127.0.0.1:{net.ETCD_PORT}"
        peer = f"http://127.0.0.1:{net.ETCD_PEER_PORT}"
        super().__init__(
            "etcd",
            lay.logs,
            [
                str(lay.bin("etcd", "etcd")),
                "--name=local",
                f"--data-dir={lay.state / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                "--log-level=warn",
                "--quota-backend-bytes=1073741824",
            ],
        )

    def ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{net.ETCD_PORT}/health")


class KubeApiserver(Component):
    def __init__(self, lay: Layout, pki: Pki) -> None:
        self.pki = pki
        c = pki.cert
        sa_key, sa_pub = pki.dir / "sa.key", pki.dir / "sa.pub"
        super().__init__(
            "kube-apiserver",
            lay.logs,
            [
                str(lay.bin("kubernetes", "kube-apiserver")),
                f"--bind-address={net.HOST_IP}",
                f"--advertise-address={net.HOST_IP}",
                f"--secure-port={net.API_PORT}",
                f"--etcd-servers=http://127.0.0.1:{net.ETCD_PORT}",
                f"--service-cluster-ip-range={net.SERVICE_CIDR}",
                f"--client-ca-file={c('ca').crt}",
                f"--tls-cert-file={c('apiserver').crt}",
                f"--tls-private-key-file={c('apiserver').key}",
                f"--kubelet-client-certificate={c('apiserver-kubelet-client').crt}",
                f"--kubelet-client-key={c('apiserver-kubelet-client').key}",
                f"--kubelet-certificate-authority={c('ca').crt}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                f"--service-account-issuer=https://kubernetes.default.svc.{net.CLUSTER_DOMAIN}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                f"--requestheader-client-ca-file={c('front-proxy-ca').crt}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={c('front-proxy-client').crt}",
                f"--proxy-client-key-file={c('front-proxy-client').key}",
                # aggregated APIs (KEDA's adapter, metrics-server) reached at their pods' IPs:
                # this machine routes to pods, it runs no kube-proxy of its own
                "--enable-aggregator-routing=true",
                "--profiling=false",
                "--v=1",
            ],
        )

    def ready(self) -> bool:
        return https_ok(f"https://{net.HOST_IP}:{net.API_PORT}/readyz", self.pki)


class KubeControllerManager(Component):
    def __init__(self, lay: Layout, pki: Pki) -> None:
        self.pki = pki
        kubeconfig = lay.config / "controller-manager.kubeconfig"
        c = pki.cert
        super().__init__(
            "kube-controller-manager",
            lay.logs,
            [
                str(lay.bin("kubernetes", "kube-controller-manager")),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={net.CONTROLLER_MANAGER_PORT}",
                f"--tls-cert-file={c('kube-controller-manager-server').crt}",
                f"--tls-private-key-file={c('kube-controller-manager-server').key}",
                f"--cluster-signing-cert-file={c('ca').crt}",
                f"--cluster-signing-key-file={c('ca').key}",
                f"--root-ca-file={c('ca').crt}",
                f"--service-account-private-key-file={pki.dir / 'sa.key'}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={net.SERVICE_CIDR}",
                f"--node-monitor-grace-period={NODE_GRACE}",
                # HPAs read their metrics every 5 s (the default 15 s makes scaling tests slow)
                "--horizontal-pod-autoscaler-sync-period=5s",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        self.kubeconfig = kubeconfig

    def prepare(self) -> None:
        write_kubeconfig(
            self.kubeconfig, self.pki.cert("ca").crt, self.pki.cert("controller-manager")
        )

    def ready(self) -> bool:
        return https_ok(f"https://127.0.0.1:{net.CONTROLLER_MANAGER_PORT}/healthz", self.pki)


class KubeScheduler(Component):
    def __init__(self, lay: Layout, pki: Pki) -> None:
        self.pki = pki
        kubeconfig = lay.config / "scheduler.kubeconfig"
        super().__init__(
            "kube-scheduler",
            lay.logs,
            [
                str(lay.bin("kubernetes", "kube-scheduler")),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={net.SCHEDULER_PORT}",
                f"--tls-cert-file={pki.cert('kube-scheduler-server').crt}",
                f"--tls-private-key-file={pki.cert('kube-scheduler-server').key}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        self.kubeconfig = kubeconfig

    def prepare(self) -> None:
        write_kubeconfig(self.kubeconfig, self.pki.cert("ca").crt, self.pki.cert("scheduler"))

    def ready(self) -> bool:
        return https_ok(f"https://127.0.0.1:{net.SCHEDULER_PORT}/healthz", self.pki)


def control_plane(lay: Layout, pki: Pki) -> list[Component]:
    """In start order."""
    return [
        Etcd(lay),
        KubeApiserver(lay, pki),
        KubeControllerManager(lay, pki),
        KubeScheduler(lay, pki),
    ]
