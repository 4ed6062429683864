"""One class per process of the local cluster: its argv, its config files, its readiness.

Start order (``stack.Cluster``): etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, containerd, kubelet, kube-proxy. Each is a child in its own session whose
output goes to ``<run>/logs/<name>.log``; ``up`` records its PID so that ``down`` stops it
even from another process.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import httpx

from kubescaler_dev.cluster import layout as net
from kubescaler_dev.cluster.host import Journal
from kubescaler_dev.cluster.layout import Layout
from kubescaler_dev.cluster.pki import Cert, Leaf, Pki
from kubescaler_dev.proc import Proc

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


def leaves() -> list[Leaf]:
    """Every certificate the cluster uses."""
    api_dns = (
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{net.CLUSTER_DOMAIN}",
        "localhost",
    )
    return [
        Leaf(
            "apiserver",
            "kube-apiserver",
            dns=api_dns,
            ips=("127.0.0.1", net.NODE_IP, net.API_SERVICE_IP),
            server=True,
            client=False,
        ),
        Leaf("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)),
        Leaf("admin", "kubernetes-admin", ("system:masters",)),
        Leaf("controller-manager", "system:kube-controller-manager"),
        Leaf("scheduler", "system:kube-scheduler"),
        Leaf("kube-proxy", "system:kube-proxy"),
        Leaf("kubelet-client", f"system:node:{net.NODE_NAME}", ("system:nodes",)),
        Leaf(
            "kubelet-server",
            net.NODE_NAME,
            dns=(net.NODE_NAME,),
            ips=(net.NODE_IP,),
            server=True,
            client=False,
        ),
        Leaf("front-proxy-client", "front-proxy-client", ca="front-proxy-ca"),
        # the health endpoints of the two controllers, on 127.0.0.1, checked against the CA
        *(
            Leaf(
                f"{name}-server",
                name,
                dns=("localhost",),
                ips=("127.0.0.1",),
                server=True,
                client=False,
            )
            for name in ("kube-controller-manager", "kube-scheduler")
        ),
    ]


def write_kubeconfig(path: Path, ca: Path, cert: Cert, server: str | None = None) -> Path:
    """A kubeconfig (JSON is YAML) naming the API server, the CA and a client certificate."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kubescaler-local",
                "cluster": {
                    "server": server or f"https://{net.NODE_IP}:{net.API_PORT}",
                    "certificate-authority": str(ca),
                },
            }
        ],
        "users": [
            {
                "name": cert.name,
                "user": {"client-certificate": str(cert.crt), "client-key": str(cert.key)},
            }
        ],
        "contexts": [
            {
                "name": "kubescaler-local",
                "context": {"cluster": "kubescaler-local", "user": cert.name},
            }
        ],
        "current-context": "kubescaler-local",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path


def _https_ok(url: str, pki: Pki, cert: str = "admin") -> bool:
    ctx = ssl.create_default_context(cafile=str(pki.cert("ca").crt))
    client = pki.cert(cert)
    ctx.load_cert_chain(str(client.crt), str(client.key))
    return httpx.get(url, verify=ctx, timeout=2.0).status_code == 200


class Component(Proc):
    """A cluster process: ``name``, ``argv``, log under the run's logs, ``ready()``."""

    def __init__(self, name: str, lay: Layout, argv: list[str], env: dict[str, str] | None = None):
        super().__init__(name, argv, lay.logs / f"{name}.log", env=env)
        self.lay = lay

    def prepare(self) -> None:
        """Write config files before start (default: nothing)."""

    def ready(self) -> bool:
        raise NotImplementedError


class Etcd(Component):
    def __init__(self, lay: Layout) -> None:
        client = f"http://127.0.0.1:{net.ETCD_PORT}"
        peer = f"http://127.0.0.1:{net.ETCD_PEER_PORT}"
        super().__init__(
            "etcd",
            lay,
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
        found = httpx.get(f"http://127.0.0.1:{net.ETCD_PORT}/health", timeout=2.0)
        return found.status_code == 200 and found.json().get("health") == "true"


class KubeApiserver(Component):
    def __init__(self, lay: Layout, pki: Pki) -> None:
        self.pki = pki
        c = pki.cert
        sa_key, sa_pub = pki.dir / "sa.key", pki.dir / "sa.pub"
        super().__init__(
            "kube-apiserver",
            lay,
            [
                str(lay.bin("kubernetes", "kube-apiserver")),
                f"--bind-address={net.NODE_IP}",
                f"--advertise-address={net.NODE_IP}",
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
                # aggregated APIs (KEDA's adapter, metrics-server) reached at their pods' IPs
                "--enable-aggregator-routing=true",
                "--profiling=false",
                "--v=1",
            ],
        )

    def ready(self) -> bool:
        return _https_ok(f"https://{net.NODE_IP}:{net.API_PORT}/readyz", self.pki)


class KubeControllerManager(Component):
    def __init__(self, lay: Layout, pki: Pki) -> None:
        self.pki = pki
        kubeconfig = lay.config / "controller-manager.kubeconfig"
        c = pki.cert
        super().__init__(
            "kube-controller-manager",
            lay,
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
        return _https_ok(
            f"https://127.0.0.1:{net.CONTROLLER_MANAGER_PORT}/healthz", self.pki, "admin"
        )


class KubeScheduler(Component):
    def __init__(self, lay: Layout, pki: Pki) -> None:
        self.pki = pki
        kubeconfig = lay.config / "scheduler.kubeconfig"
        super().__init__(
            "kube-scheduler",
            lay,
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
        return _https_ok(f"https://127.0.0.1:{net.SCHEDULER_PORT}/healthz", self.pki, "admin")


class Containerd(Component):
    """containerd with the CRI plugin, runc (Debian's) and the CNI bridge on our bridge."""

    def __init__(self, lay: Layout, pause_image: str, runc: str, cni_bin: str) -> None:
        self.config_file = lay.config / "containerd.toml"
        self.pause_image = pause_image
        self.runc = runc
        self.cni_bin = cni_bin
        bin_dir = lay.bin("containerd", "containerd").parent
        super().__init__(
            "containerd",
            lay,
            [str(bin_dir / "containerd"), "--config", str(self.config_file)],
            # the shim is found on PATH
            env={"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"},
        )

    @property
    def cni_conf_dir(self) -> Path:
        return self.lay.config / "cni"

    def ctr(self) -> list[str]:
        return [
            str(self.lay.bin("containerd", "ctr")),
            "--address",
            str(self.lay.containerd_socket),
            "--namespace",
            "k8s.io",
        ]

    def prepare(self) -> None:
        lay = self.lay
        state = lay.containerd_state
        cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            f"""version = 3
root = "{lay.containerd_root}"
state = "{state / "state"}"
temp = "{state / "tmp"}"

[grpc]
  address = "{lay.containerd_socket}"

[ttrpc]
  address = "{state / "containerd.sock.ttrpc"}"

[metrics]
  address = ""

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{self.pause_image}"

[{cri_runtime}]
  enable_selinux = false
  disable_apparmor = true
  # the kubelet asks for oom_score_adj -998 for critical pods; root here may not lower it
  restrict_oom_score_adj = true
  # pods' network namespaces under our state folder, not /var/run/netns
  netns_mounts_under_state_dir = true
  enable_cdi = false
  [{cri_runtime}.containerd]
    default_runtime_name = "runc"
    [{cri_runtime}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri_runtime}.containerd.runtimes.runc.options]
        BinaryName = "{self.runc}"
        Root = "{state / "runc"}"
        SystemdCgroup = false
  [{cri_runtime}.cni]
    bin_dirs = ["{self.cni_bin}"]
    conf_dir = "{self.cni_conf_dir}"
    max_conf_num = 1
    # containerd brings each pod's `lo` up itself
    use_internal_loopback = true

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""
        )
        self.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        (self.cni_conf_dir / "10-kubescaler.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "kubescaler",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": net.BRIDGE,
                            # the bridge and its address are ours (stack.NodeBridge); with
                            # isGateway the plugin would turn on forwarding machine-wide
                            "isGateway": False,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "dataDir": str(state / "ipam"),
                                "ranges": [
                                    [
                                        {
                                            "subnet": net.POD_SUBNET,
                                            "rangeStart": net.POD_RANGE_START,
                                            "gateway": net.NODE_IP,
                                        }
                                    ]
                                ],
                                # services only: no default route out of a pod
                                "routes": [{"dst": net.SERVICE_CIDR}],
                            },
                        },
                    ],
                },
                indent=2,
            )
        )

    def ready(self) -> bool:
        if not self.lay.containerd_socket.exists():
            return False
        done = subprocess.run(
            [*self.ctr(), "version"], capture_output=True, timeout=10, check=False
        )
        return done.returncode == 0


class Kubelet(Component):
    """The kubelet, in a mount namespace of its own that shows it the kernel settings it wants.

    The kubelet checks six kernel settings (``KUBELET_SYSCTLS``) and, unless told to protect
    them, rewrites them for the whole machine (reboot on panic among them). Here it runs under
    ``unshare -m`` with files holding the values it expects bind-mounted over those
    ``/proc/sys`` entries - in its namespace only - and with ``protectKernelDefaults`` on, so
    if that ever failed it would refuse to start rather than write them. Its root folder is
    bind-mounted onto itself and made ``rshared`` first, so the volume mounts it makes there
    reach containerd, which runs in the machine's namespace.
    """

    def __init__(self, lay: Layout, pki: Pki, journal: Journal) -> None:
        self.pki = pki
        self.journal = journal
        self.config_file = lay.config / "kubelet.yaml"
        self.kubeconfig = lay.config / "kubelet.kubeconfig"
        self.sysctl_dir = lay.config / "sysctl"
        super().__init__("kubelet", lay, [])

    def prepare(self) -> None:
        lay, c = self.lay, self.pki.cert
        write_kubeconfig(self.kubeconfig, c("ca").crt, c("kubelet-client"))
        resolv = lay.config / "resolv.conf"
        # no upstream DNS exists here: pods resolve cluster names only (CoreDNS forwards nowhere)
        resolv.write_text("options ndots:5\n")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": net.NODE_IP,
            "port": net.KUBELET_PORT,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": net.KUBELET_HEALTHZ_PORT,
            "readOnlyPort": 0,
            "tlsCertFile": str(c("kubelet-server").crt),
            "tlsPrivateKeyFile": str(c("kubelet-server").key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(c("ca").crt)},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{lay.containerd_socket}",
            "cgroupDriver": "cgroupfs",
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
            "podLogsDir": str(lay.state / "pod-logs"),
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
        self.config_file.write_text(json.dumps(config, indent=2) + "\n")
        self.sysctl_dir.mkdir(parents=True, exist_ok=True)
        binds = []
        for key, value in KUBELET_SYSCTLS.items():
            host = Path("/proc/sys") / key
            if host.read_text().strip() == value:
                continue
            fake = self.sysctl_dir / key.replace("/", ".")
            fake.write_text(value + "\n")
            binds.append(f"mount --bind {fake} {host}")
        root = lay.kubelet_root
        root.mkdir(parents=True, exist_ok=True)
        if str(root) not in _mount_targets():
            self.journal.record("mount", str(root))
            subprocess.run(["mount", "--bind", str(root), str(root)], check=True)
            subprocess.run(["mount", "--make-rshared", str(root)], check=True)
        if not Path("/var/log/containers").exists():
            # the kubelet links container logs there (a fixed path); ours to remove after
            self.journal.record("dir", "/var/log/containers")
        self.journal.record("cgroup", "kubepods")
        kubelet = [
            str(lay.bin("kubernetes", "kubelet")),
            f"--config={self.config_file}",
            f"--kubeconfig={self.kubeconfig}",
            f"--root-dir={root}",
            f"--hostname-override={net.NODE_NAME}",
            f"--node-ip={net.NODE_IP}",
            "--v=1",
        ]
        script = " && ".join([*binds, 'exec "$@"'])
        unshare = shutil.which("unshare") or "unshare"
        self.argv = [
            unshare,
            "-m",
            "--propagation",
            "unchanged",
            "sh",
            "-c",
            script,
            "kubelet",
            *kubelet,
        ]

    def ready(self) -> bool:
        found = httpx.get(f"http://127.0.0.1:{net.KUBELET_HEALTHZ_PORT}/healthz", timeout=2.0)
        return found.status_code == 200


class KubeProxy(Component):
    """kube-proxy in nftables mode: its own ``kube-proxy`` tables, nothing in iptables.

    No conntrack sysctl is touched (``maxPerCore: 0`` and zero timeouts keep the machine's),
    NodePorts answer on the node address only (never on 127.0.0.1, which would need
    ``route_localnet``).
    """

    def __init__(self, lay: Layout, pki: Pki, journal: Journal) -> None:
        self.pki = pki
        self.journal = journal
        self.config_file = lay.config / "kube-proxy.yaml"
        self.kubeconfig = lay.config / "kube-proxy.kubeconfig"
        super().__init__(
            "kube-proxy",
            lay,
            [str(lay.bin("kubernetes", "kube-proxy")), f"--config={self.config_file}", "--v=1"],
        )

    def prepare(self) -> None:
        write_kubeconfig(self.kubeconfig, self.pki.cert("ca").crt, self.pki.cert("kube-proxy"))
        for family in ("ip", "ip6"):
            self.journal.record("nft-table", f"{family} kube-proxy")
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.kubeconfig)},
            "mode": "nftables",
            "hostnameOverride": net.NODE_NAME,
            "clusterCIDR": net.POD_SUBNET,
            "detectLocalMode": "ClusterCIDR",
            "healthzBindAddress": f"127.0.0.1:{net.PROXY_HEALTHZ_PORT}",
            "metricsBindAddress": f"127.0.0.1:{net.PROXY_METRICS_PORT}",
            "nodePortAddresses": [f"{net.NODE_IP}/32"],
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }
        self.config_file.write_text(json.dumps(config, indent=2) + "\n")

    def ready(self) -> bool:
        found = httpx.get(f"http://127.0.0.1:{net.PROXY_HEALTHZ_PORT}/healthz", timeout=2.0)
        return found.status_code == 200


def _mount_targets() -> list[str]:
    return [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if len(line.split()) > 4
    ]
