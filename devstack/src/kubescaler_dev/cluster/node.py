"""One node of the local cluster: its network, containerd, kubelet, kube-proxy and NetworkPolicy
enforcer, and what can
happen to it - started, stopped, lost, frozen, resumed, brought back.

- **lost**: its port on ``ksbr0`` goes down (its peers hear nothing more, not even a reset),
  then every process of the node - the three agents, containerd's shims and every process in
  its pods' cgroups - is killed at once. Its disk (``<run>/nodes/<i>``) is kept.
- **frozen**: every such process is stopped with SIGSTOP: its peers see a partition (sockets
  accept and then nothing answers); **resumed** continues them.
- **back** (after lost): its port comes up and its agents start again on the same disk; the
  kubelet finds its pods from the API server and starts them again.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

from kubescaler_dev.cluster.cni import NodeNetwork
from kubescaler_dev.cluster.component import Component
from kubescaler_dev.cluster.containerd import Containerd
from kubescaler_dev.cluster.host import CGROUP_ROOT, Journal
from kubescaler_dev.cluster.kubelet import Kubelet, KubeProxy
from kubescaler_dev.cluster.layout import Layout, NodeNet
from kubescaler_dev.cluster.netpol import NetworkPolicyEnforcer
from kubescaler_dev.cluster.pki import Pki


class Node:
    def __init__(
        self, lay: Layout, index: int, peers: list[NodeNet], pki: Pki, journal: Journal
    ) -> None:
        self.lay = lay.node(index)
        self.net = self.lay.net
        self.network = NodeNetwork(self.net, peers, journal)
        self.containerd = Containerd(lay, self.lay)
        self.kubelet = Kubelet(lay, self.lay, pki, journal)
        self.kube_proxy = KubeProxy(lay, self.lay, pki)
        self.netpol = NetworkPolicyEnforcer(lay, self.lay, pki)

    @property
    def name(self) -> str:
        return self.net.name

    def agents(self) -> list[Component]:
        """In start order: containerd first (the kubelet needs its socket); the NetworkPolicy
        enforcer last (it reads its Node object, which the kubelet registers)."""
        return [self.containerd, self.kubelet, self.kube_proxy, self.netpol]

    # ---- what belongs to the node ----

    def pod_pids(self) -> list[int]:
        """Every process in the node's pods' cgroups (walked with os.walk, which skips the
        cgroups of containers that exit while it looks)."""
        found: set[int] = set()
        for hierarchy in CGROUP_ROOT.glob(f"*/{self.net.cgroup}"):
            for folder, _, files in os.walk(hierarchy):
                if "cgroup.procs" in files:
                    with contextlib.suppress(OSError):
                        found.update(
                            int(p) for p in Path(folder, "cgroup.procs").read_text().split()
                        )
        return sorted(found)

    def shim_pids(self) -> list[int]:
        """containerd's shims for this node (found by its state folder in their command line)."""
        needle = str(self.lay.containerd_state).encode()
        found = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError):
                    cmdline = (proc / "cmdline").read_bytes()
                    if b"containerd-shim" in cmdline and needle in cmdline:
                        found.append(int(proc.name))
        return found

    def signal_all(self, sig: int, agents: dict[str, int]) -> None:
        """``sig`` to every process of the node: its agents (by recorded PID, as process
        groups), containerd's shims, and every process in its pods."""
        for pid in agents.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
        for pid in [*self.shim_pids(), *self.pod_pids()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    # ---- faults ----

    def crash(self, pod_uid: str, container_id: str) -> list[int]:
        """SIGKILL every process of one container (a crash, as the OOM killer does): the
        kubelet starts it again in the same pod, on the same volumes. The processes killed."""
        killed = []
        # the container's folder named outright in each hierarchy and QoS class: a walk of
        # kubepods/** meets other containers' folders vanishing under it (FileNotFoundError)
        for folder in (
            hierarchy / self.net.cgroup / "kubepods" / qos / f"pod{pod_uid}" / container_id
            for hierarchy in CGROUP_ROOT.iterdir()
            for qos in ("", "burstable", "besteffort")
        ):
            with contextlib.suppress(OSError):
                for pid in (folder / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                        killed.append(int(pid))
        return sorted(set(killed))

    def lose(self, agents: dict[str, int]) -> None:
        self.network.cut()
        self.signal_all(signal.SIGKILL, agents)

    def freeze(self, agents: dict[str, int]) -> None:
        self.signal_all(signal.SIGSTOP, agents)

    def resume(self, agents: dict[str, int]) -> None:
        self.signal_all(signal.SIGCONT, agents)

    def come_back(self, start: Callable[[Component], None]) -> None:
        """After ``lose``: the network back, the agents started again on the same disk."""
        self.network.mend()
        for agent in self.agents():
            start(agent)


def recorded(pids: dict[str, int], node: str) -> dict[str, int]:
    """The recorded PIDs of ``node``'s agents."""
    return {name: pid for name, pid in pids.items() if name.startswith(f"{node}/")}
