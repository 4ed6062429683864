"""Where the local cluster keeps things, and its network: one place for paths and addresses.

- the **cache** (``KUBESCALER_CLUSTER_CACHE_DIR``, default ``~/.cache/kubescaler/cluster``,
  outside the checkout): built binaries, root filesystems, image archives and each node's
  containerd image store. It survives between runs and fresh clones; keys are the pinned
  versions.
- the **run** folder (``<cache>/run``): one cluster run's etcd data, certificates, configs,
  logs, PIDs, each node's disk and the journal of what it changed on the machine. A new ``up``
  starts from an empty one. It lives beside the cache, not in a checkout, because the cluster
  is one per machine (its bridge and ports are): ``down`` from any checkout, or the next
  ``up`` after a crash in a checkout since deleted, still finds what to stop and undo.

The network stays on this machine. A bridge of our own (``ksbr0``) holds the control plane's
address and one veth per node; each node is a network namespace of its own holding its
kubelet, containerd, kube-proxy and a bridge for its pods (``cbr0``), its pod range routed
from the other nodes straight over ``ksbr0``. Nothing has a default route, and nothing is
NATed out, so nothing a pod sends can leave the machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kubescaler_dev.cluster.versions import BUILDS

#: the host side: the control plane's address on ksbr0 and the range of node addresses
BRIDGE = "ksbr0"
HOST_IP = "10.214.0.1"
NODE_NET = "10.214.0.0/24"
#: every pod of every node (node i: 10.216.i.0/24)
POD_CIDR = "10.216.0.0/16"
SERVICE_CIDR = "10.215.0.0/16"
API_SERVICE_IP = "10.215.0.1"
DNS_SERVICE_IP = "10.215.0.10"
CLUSTER_DOMAIN = "cluster.local"
MAX_NODES = 9

API_PORT = 6443
ETCD_PORT = 23790
ETCD_PEER_PORT = 23800
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259
#: the ports each node serves on its own address (in its own namespace: no clashes)
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
PROXY_HEALTHZ_PORT = 10256
PROXY_METRICS_PORT = 10249
#: the Gateway's port: the load balancer on the host's 127.0.0.1, and Traefik on each node
GATEWAY_PORT = 80
#: the Gateway's HTTPS port (port 80 answers with a redirect to it), on 127.0.0.1 and each node
GATEWAY_TLS_PORT = 443
#: Traefik's own entry point on each node (/ping: the load balancer's health check)
GATEWAY_PING_PORT = 9080


@dataclass(frozen=True)
class NodeNet:
    """The addresses and names of node ``index`` (1-based)."""

    index: int

    @property
    def name(self) -> str:
        return f"kubescaler-{self.index}"

    @property
    def ip(self) -> str:
        return f"10.214.0.{10 + self.index}"

    @property
    def netns(self) -> str:
        return f"ks-node-{self.index}"

    @property
    def veth(self) -> str:
        """The host end of the node's veth, a port of ksbr0."""
        return f"ksn{self.index}"

    @property
    def pod_subnet(self) -> str:
        return f"10.216.{self.index}.0/24"

    @property
    def pod_gateway(self) -> str:
        return f"10.216.{self.index}.1"

    @property
    def pod_range_start(self) -> str:
        return f"10.216.{self.index}.10"

    @property
    def cgroup(self) -> str:
        """The cgroup the node's kubelet puts its pods under (``<cgroup>/kubepods/...``)."""
        return f"ks-node-{self.index}"


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubescaler" / "cluster"


@dataclass(frozen=True)
class NodeLayout:
    """One node's folders: its disk is ``dir`` (kept when the node is lost)."""

    run: Path
    cache: Path
    net: NodeNet

    @property
    def dir(self) -> Path:
        return self.run / "nodes" / str(self.net.index)

    @property
    def config(self) -> Path:
        return self.dir / "config"

    @property
    def containerd_root(self) -> Path:
        """containerd's image store: in the cache, so imported images outlive a run."""
        return self.cache / f"containerd-root-{self.net.index}"

    @property
    def containerd_state(self) -> Path:
        return self.dir / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_state / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.dir / "kubelet"

    @property
    def volumes(self) -> Path:
        """Folders behind the node's local PersistentVolumes."""
        return self.dir / "volumes"


@dataclass(frozen=True)
class Layout:
    cache: Path

    @property
    def state(self) -> Path:
        return self.cache / "run"

    def bin(self, build: str, name: str) -> Path:
        return self.cache / "bin" / BUILDS[build].key / name

    def node(self, index: int) -> NodeLayout:
        return NodeLayout(self.state, self.cache, NodeNet(index))

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def config(self) -> Path:
        return self.state / "config"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (``kubectl --kubeconfig``)."""
        return self.config / "admin.kubeconfig"

    @property
    def pids(self) -> Path:
        return self.state / "pids.json"

    @property
    def nodes_file(self) -> Path:
        """How many nodes this run has (``up --nodes``)."""
        return self.state / "node-count"
