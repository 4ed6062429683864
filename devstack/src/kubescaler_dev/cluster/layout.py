"""Where the local cluster keeps things, and its network: one place for paths and addresses.

- the **cache** (``KUBESCALER_CLUSTER_CACHE_DIR``, default ``~/.cache/kubescaler/cluster``,
  outside the checkout): built binaries, root filesystems, image archives and containerd's
  image store. It survives between runs and fresh clones; keys are the pinned versions.
- the **run** folder (``<cache>/run``): one cluster run's etcd data, certificates, configs,
  logs, PIDs and the journal of what it changed on the machine. A new ``up`` starts from an
  empty one. It lives beside the cache, not in a checkout, because the cluster is one per
  machine (its bridge and ports are): ``down`` from any checkout, or the next ``up`` after a
  crash in a checkout since deleted, still finds what to stop and undo.

The network stays on this machine: a bridge of our own holds the node address and the pods;
pods get a route to the service range only (no default route, no NAT), so nothing they send
can leave it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kubescaler_dev.cluster.versions import BUILDS

NODE_NAME = "kubescaler-local"
BRIDGE = "ksbr0"
NODE_IP = "10.214.0.1"
POD_SUBNET = "10.214.0.0/24"
POD_RANGE_START = "10.214.0.10"
SERVICE_CIDR = "10.215.0.0/16"
API_SERVICE_IP = "10.215.0.1"
DNS_SERVICE_IP = "10.215.0.10"
CLUSTER_DOMAIN = "cluster.local"

API_PORT = 6443
ETCD_PORT = 23790
ETCD_PEER_PORT = 23800
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
PROXY_HEALTHZ_PORT = 10256
PROXY_METRICS_PORT = 10249
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259
#: the Gateway's listener port: Traefik (host network) binds it on 127.0.0.1 only
GATEWAY_PORT = 80


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubescaler" / "cluster"


@dataclass(frozen=True)
class Layout:
    cache: Path

    @property
    def state(self) -> Path:
        return self.cache / "run"

    def bin(self, build: str, name: str) -> Path:
        return self.cache / "bin" / BUILDS[build].key / name

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
    def containerd_root(self) -> Path:
        """containerd's image store: in the cache, so imported images outlive a run."""
        return self.cache / "containerd-root"

    @property
    def containerd_state(self) -> Path:
        return self.state / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_state / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.state / "kubelet"

    @property
    def volumes(self) -> Path:
        """Folders behind the local PersistentVolumes."""
        return self.state / "volumes"

    @property
    def pids(self) -> Path:
        return self.state / "pids.json"
