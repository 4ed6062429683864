"""The cluster's network: the host bridge, each node's network namespace, the pods' CNI config.

```
 host (the machine's namespace)            node i (namespace ks-node-i)
 ksbr0 10.214.0.1  (API server) ──veth──── eth0 10.214.0.1i  kubelet, containerd, kube-proxy
   routes 10.216.i.0/24 via 10.214.0.1i     cbr0 10.216.i.1 ── the node's pods (CNI bridge)
                                             routes 10.216.j.0/24 via 10.214.0.1j (node j)
```

Nodes reach each other's pods straight over ``ksbr0`` (layer 2), so the machine forwards
nothing. Forwarding is turned on inside each node's namespace, where it is the namespace's own
setting, never the machine's. A node's kube-proxy programs nftables in its namespace only.
Everything here is recorded in the journal before it is made and goes with ``down``.
"""

from __future__ import annotations

import json
from pathlib import Path

from kubescaler_dev.cluster import layout as net
from kubescaler_dev.cluster.host import Journal
from kubescaler_dev.cluster.layout import NodeNet
from kubescaler_dev.cluster.progress import ClusterError, run

CNI_BIN = "/usr/lib/cni"
POD_BRIDGE = "cbr0"


def in_netns(node: NodeNet, argv: list[str]) -> list[str]:
    """``argv`` run in the node's network namespace (and the machine's mount namespace)."""
    return ["nsenter", f"--net=/run/netns/{node.netns}", *argv]


class HostBridge:
    """``ksbr0``: the control plane's address and one port per node."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def up(self) -> None:
        if Path(f"/sys/class/net/{net.BRIDGE}").exists():
            raise ClusterError(f"network link {net.BRIDGE} exists: is another cluster running?")
        self.journal.record("link", net.BRIDGE)
        run(["ip", "link", "add", net.BRIDGE, "type", "bridge"], "ip link add")
        run(["ip", "addr", "add", f"{net.HOST_IP}/24", "dev", net.BRIDGE], "ip addr add")
        run(["ip", "link", "set", net.BRIDGE, "up"], "ip link set up")


class NodeNetwork:
    """Node ``node``'s namespace, its veth to ``ksbr0``, its pod bridge and routes."""

    def __init__(self, node: NodeNet, peers: list[NodeNet], journal: Journal) -> None:
        self.node = node
        self.peers = [p for p in peers if p.index != node.index]
        self.journal = journal

    def _ns(self, *argv: str) -> None:
        run(in_netns(self.node, list(argv)), f"{self.node.netns}: {' '.join(argv[:4])}")

    def up(self) -> None:
        n = self.node
        if Path(f"/run/netns/{n.netns}").exists():
            raise ClusterError(f"network namespace {n.netns} exists: is another cluster running?")
        self.journal.record("netns", n.netns)
        run(["ip", "netns", "add", n.netns], f"ip netns add {n.netns}")
        self.journal.record("link", n.veth)
        run(
            ["ip", "link", "add", n.veth, "type", "veth", "peer", "name", "eth0", "netns", n.netns],
            f"ip link add {n.veth}",
        )
        run(["ip", "link", "set", n.veth, "master", net.BRIDGE, "up"], f"ip link set {n.veth}")
        self._ns("ip", "link", "set", "lo", "up")
        self._ns("ip", "addr", "add", f"{n.ip}/24", "dev", "eth0")
        self._ns("ip", "link", "set", "eth0", "up")
        self._ns("ip", "link", "add", POD_BRIDGE, "type", "bridge")
        self._ns("ip", "addr", "add", f"{n.pod_gateway}/24", "dev", POD_BRIDGE)
        self._ns("ip", "link", "set", POD_BRIDGE, "up")
        # the namespace's own forwarding switch (pods <-> other nodes), not the machine's
        self._ns("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
        for peer in self.peers:
            self._ns("ip", "route", "add", peer.pod_subnet, "via", peer.ip, "dev", "eth0")
        # locally sent packets to a ClusterIP need a route before kube-proxy's DNAT rewrites them
        self._ns("ip", "route", "add", net.SERVICE_CIDR, "dev", "eth0")
        # the host reaches the node's pods (the API server's aggregated APIs); gone with ksbr0
        run(
            ["ip", "route", "add", n.pod_subnet, "via", n.ip, "dev", net.BRIDGE],
            f"ip route add {n.pod_subnet}",
        )

    def cut(self) -> None:
        """The node falls silent for its peers: its port on ksbr0 goes down (nothing it sends
        or is sent arrives; no reset either, as when a machine is lost)."""
        run(["ip", "link", "set", self.node.veth, "down"], f"ip link set {self.node.veth} down")

    def mend(self) -> None:
        run(["ip", "link", "set", self.node.veth, "up"], f"ip link set {self.node.veth} up")
        # the route over the link went down with it
        run(
            ["ip", "route", "replace", self.node.pod_subnet, "via", self.node.ip, "dev",
             net.BRIDGE],
            f"ip route replace {self.node.pod_subnet}",
        )  # fmt: skip


def conflist(node: NodeNet, ipam_dir: Path) -> str:
    """The CNI configuration of the node's pods: a veth each on ``cbr0``, an address from the
    node's range, routes to the cluster's ranges only (no default route out of a pod)."""
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "kubescaler",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": POD_BRIDGE,
                    # the bridge and its address are ours (NodeNetwork); with isGateway the
                    # plugin would set them itself and turn forwarding on
                    "isGateway": False,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(ipam_dir),
                        "ranges": [
                            [
                                {
                                    "subnet": node.pod_subnet,
                                    "rangeStart": node.pod_range_start,
                                    "gateway": node.pod_gateway,
                                }
                            ]
                        ],
                        "routes": [
                            {"dst": net.NODE_NET},
                            {"dst": net.SERVICE_CIDR},
                            {"dst": net.POD_CIDR},
                        ],
                    },
                },
            ],
        },
        indent=2,
    )
