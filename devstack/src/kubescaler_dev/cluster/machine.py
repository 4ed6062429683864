"""What this machine must have for the local cluster, what of it the cluster must leave alone,
and the one lock that keeps two cluster commands from running at once."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from kubescaler_dev.cluster.cni import CNI_BIN
from kubescaler_dev.cluster.containerd import RUNC
from kubescaler_dev.cluster.gobuild import go_binary
from kubescaler_dev.cluster.kubelet import KUBELET_SYSCTLS
from kubescaler_dev.cluster.layout import Layout
from kubescaler_dev.cluster.progress import ClusterError, Progress

#: kernel settings of the machine a cluster run must not change (the kubelet's six among them)
HOST_SYSCTLS = (
    *KUBELET_SYSCTLS,
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/netfilter/nf_conntrack_max",
)

#: what a machine needs besides Go, and the Debian package that brings it
PREREQUISITES = {
    "podman": "podman",
    "mmdebstrap": "mmdebstrap",
    RUNC: "runc",
    f"{CNI_BIN}/bridge": "containernetworking-plugins",
    "nft": "nftables",
    "iptables": "iptables",
    "ipset": "ipset",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "ip": "iproute2",
    "openssl": "openssl",
    "gcc": "gcc",
    "haproxy": "haproxy",
}


def _exists(tool: str) -> bool:
    return Path(tool).is_file() if tool.startswith("/") else shutil.which(tool) is not None


def check_prerequisites() -> None:
    """One clear line for the first thing missing; nothing is started before this passes."""
    if os.geteuid() != 0:
        raise ClusterError(
            "the local cluster needs root (it makes network namespaces, mounts and cgroups): "
            "run it as root or with sudo"
        )
    missing = sorted({pkg for tool, pkg in PREREQUISITES.items() if not _exists(tool)})
    if missing:
        raise ClusterError(
            f"missing Debian packages for the local cluster: {' '.join(missing)} "
            f"(`apt-get install {' '.join(missing)}`; `./dev` installs them)"
        )
    go_binary()


@contextlib.contextmanager
def exclusive(lay: Layout, progress: Progress) -> Iterator[None]:
    """One cluster command at a time on this machine (two `./dev test` runs, say): the second
    waits for the first, saying so. The lock is the machine's, not the cache's: the bridge,
    namespaces and ports are one per machine even for two caches."""
    lay.cache.mkdir(parents=True, exist_ok=True)
    machine = Path("/run/lock")
    path = machine / "kubescaler-cluster.lock" if machine.is_dir() else lay.cache / "lock"
    with path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            progress.say(f"waiting for another cluster command ({lock.read().strip()})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
