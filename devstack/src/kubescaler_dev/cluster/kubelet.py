"""A node's agents: the kubelet and kube-proxy, both in the node's network namespace.

The kubelet serves on the node's address, runs pods through the node's containerd and puts
them under a cgroup of the node's own (``ks-node-<i>/kubepods``), so that several kubelets on
one machine never take each other's pods for orphans. kube-proxy programs nftables in the
node's namespace only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from kubescaler_dev.cluster import layout as net
from kubescaler_dev.cluster.cni import in_netns
from kubescaler_dev.cluster.component import Component, http_ok, write_kubeconfig
from kubescaler_dev.cluster.host import CGROUP_ROOT, Journal
from kubescaler_dev.cluster.layout import Layout, NodeLayout
from kubescaler_dev.cluster.pki import Pki

#: what the kubelet expects these kernel settings to be; it reads them through files of ours
#: (see Kubelet) and, with protectKernelDefaults, refuses to start rather than write them
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}


def make_cgroup(rel: str) -> None:
    """``rel`` in every cgroup hierarchy (the kubelet wants its cgroup root to exist); a v1
    cpuset gets its parent's CPUs and memory nodes, without which nothing can join it."""
    for hierarchy in sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()):
        folder = hierarchy / rel
        folder.mkdir(exist_ok=True)
        for key in ("cpuset.cpus", "cpuset.mems"):
            mine, parent = folder / key, hierarchy / key
            if mine.exists() and not mine.read_text().strip():
                mine.write_text(parent.read_text())


class Kubelet(Component):
    """The kubelet, in a mount namespace of its own that shows it the kernel settings it wants.

    The kubelet checks six kernel settings (``KUBELET_SYSCTLS``) and, unless told to protect
    them, rewrites them for the whole machine (reboot on panic among them). Here it runs under
    ``unshare -m`` with files holding the values it expects bind-mounted over those
    ``/proc/sys`` entries - in its namespace only - and with ``protectKernelDefaults`` on, so
    if that ever failed it would refuse to start rather than write them. Its root folder is
    bind-mounted onto itself and made ``rshared`` first, so the volume mounts it makes there
    reach containerd, which runs in the machine's mount namespace.
    """

    def __init__(self, lay: Layout, node: NodeLayout, pki: Pki, journal: Journal) -> None:
        self.lay, self.node, self.pki, self.journal = lay, node, pki, journal
        self.config_file = node.config / "kubelet.yaml"
        self.kubeconfig = node.config / "kubelet.kubeconfig"
        self.sysctl_dir = node.config / "sysctl"
        super().__init__(f"{node.net.name}/kubelet", lay.logs, [])

    def _config(self) -> dict[str, object]:
        n, c = self.node, self.pki.cert
        resolv = n.config / "resolv.conf"
        # no upstream DNS exists here: pods resolve cluster names only (CoreDNS forwards nowhere)
        resolv.write_text("options ndots:5\n")
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": n.net.ip,
            "port": net.KUBELET_PORT,
            "healthzBindAddress": n.net.ip,
            "healthzPort": net.KUBELET_HEALTHZ_PORT,
            "readOnlyPort": 0,
            "tlsCertFile": str(c(f"{n.net.name}-server").crt),
            "tlsPrivateKeyFile": str(c(f"{n.net.name}-server").key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(c("ca").crt)},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{n.containerd_socket}",
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{n.net.cgroup}",
            "cgroupsPerQOS": True,
            "enforceNodeAllocatable": ["pods"],
            "failCgroupV1": False,
            "failSwapOn": False,
            "protectKernelDefaults": True,
            # no KUBE-FIREWALL / KUBE-IPTABLES-HINT chains: kube-proxy here uses nftables
            "makeIPTablesUtilChains": False,
            "clusterDNS": [net.DNS_SERVICE_IP],
            "clusterDomain": net.CLUSTER_DOMAIN,
            "resolvConf": str(resolv),
            "podLogsDir": str(n.dir / "pod-logs"),
            # images cannot be pulled again here: never collect them
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "200Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "serializeImagePulls": False,
            "maxPods": 60,
        }

    def prepare(self) -> None:
        n, c = self.node, self.pki.cert
        write_kubeconfig(self.kubeconfig, c("ca").crt, c(f"{n.net.name}-client"))
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(self._config(), indent=2) + "\n")
        self.sysctl_dir.mkdir(parents=True, exist_ok=True)
        binds = []
        for key, value in KUBELET_SYSCTLS.items():
            host = Path("/proc/sys") / key
            if host.read_text().strip() == value:
                continue
            fake = self.sysctl_dir / key.replace("/", ".")
            fake.write_text(value + "\n")
            binds.append(f"mount --bind {fake} {host}")
        root = n.kubelet_root
        root.mkdir(parents=True, exist_ok=True)
        if str(root) not in _mount_targets():
            self.journal.record("mount", str(root))
            subprocess.run(["mount", "--bind", str(root), str(root)], check=True)
            subprocess.run(["mount", "--make-rshared", str(root)], check=True)
        if not Path("/var/log/containers").exists():
            # the kubelet links container logs there (a fixed path); ours to remove after
            self.journal.record("dir", "/var/log/containers")
        self.journal.record("cgroup", n.net.cgroup)
        make_cgroup(n.net.cgroup)
        kubelet = [
            str(self.lay.bin("kubernetes", "kubelet")),
            f"--config={self.config_file}",
            f"--kubeconfig={self.kubeconfig}",
            f"--root-dir={root}",
            f"--hostname-override={n.net.name}",
            f"--node-ip={n.net.ip}",
            "--v=1",
        ]
        script = " && ".join([*binds, 'exec "$@"'])
        unshare = shutil.which("unshare") or "unshare"
        argv = [unshare, "-m", "--propagation", "unchanged", "sh", "-c", script, "kubelet"]
        self.argv = in_netns(n.net, [*argv, *kubelet])

    def ready(self) -> bool:
        return http_ok(f"http://{self.node.net.ip}:{net.KUBELET_HEALTHZ_PORT}/healthz")


class KubeProxy(Component):
    """kube-proxy in nftables mode, in the node's namespace: its tables are that namespace's.

    No conntrack sysctl is touched (``maxPerCore: 0`` and zero timeouts keep the machine's);
    NodePorts answer on the node's address only.
    """

    def __init__(self, lay: Layout, node: NodeLayout, pki: Pki) -> None:
        self.node, self.pki = node, pki
        self.config_file = node.config / "kube-proxy.yaml"
        self.kubeconfig = node.config / "kube-proxy.kubeconfig"
        super().__init__(
            f"{node.net.name}/kube-proxy",
            lay.logs,
            in_netns(
                node.net,
                [str(lay.bin("kubernetes", "kube-proxy")), f"--config={self.config_file}", "--v=1"],
            ),
        )

    def prepare(self) -> None:
        n = self.node.net
        write_kubeconfig(self.kubeconfig, self.pki.cert("ca").crt, self.pki.cert("kube-proxy"))
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.kubeconfig)},
            "mode": "nftables",
            "hostnameOverride": n.name,
            "clusterCIDR": net.POD_CIDR,
            "detectLocalMode": "ClusterCIDR",
            "healthzBindAddress": f"{n.ip}:{net.PROXY_HEALTHZ_PORT}",
            "metricsBindAddress": f"{n.ip}:{net.PROXY_METRICS_PORT}",
            "nodePortAddresses": [f"{n.ip}/32"],
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }
        self.config_file.write_text(json.dumps(config, indent=2) + "\n")

    def ready(self) -> bool:
        return http_ok(f"http://{self.node.net.ip}:{net.PROXY_HEALTHZ_PORT}/healthz")


def _mount_targets() -> list[str]:
    return [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if len(line.split()) > 4
    ]
