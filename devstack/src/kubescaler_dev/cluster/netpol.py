"""A node's NetworkPolicy enforcer: kube-router's network-policy controller, in the node's
network namespace.

The pods' CNI (cni.py: a bridge per node) enforces nothing; this process does. It watches pods,
namespaces and NetworkPolicies and keeps iptables rules and ipsets (the ``KUBE-ROUTER-*`` and
``KUBE-NWPLCY-*`` chains, ``iptables`` 1.8's nf_tables backend, and ``ipset``) for the pods of
its node, in the node's namespace only: they go with the namespace at ``down``, and the
machine's own tables never see them. Pods sit on the node's bridge ``cbr0``, so their traffic
between two pods of one node is bridged; the namespace's ``bridge-nf-call-iptables`` (a
per-namespace setting on this kernel, 1 by default) puts it through the same FORWARD rules.
"""

from __future__ import annotations

import json
import subprocess

from kubescaler_dev.cluster import layout as net
from kubescaler_dev.cluster.cni import in_netns
from kubescaler_dev.cluster.component import Component, write_kubeconfig
from kubescaler_dev.cluster.layout import Layout, NodeLayout
from kubescaler_dev.cluster.pki import Pki
from kubescaler_dev.cluster.progress import run

#: the controller's identity (its client certificate's CN) and what it may read
USER = "system:kubescaler-netpol"

RBAC = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "kubescaler:netpol"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
             "verbs": ["get", "list", "watch"]},
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubescaler:netpol"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "kubescaler:netpol"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
    },
]  # fmt: skip

#: the chain the controller makes first; it is there once the controller runs
_TOP_CHAIN = "KUBE-ROUTER-FORWARD"


def rbac_manifest() -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": RBAC}, indent=2) + "\n"


class NetworkPolicyEnforcer(Component):
    """kube-router's firewall (``netpol``, built by versions.BUILDS) for one node."""

    def __init__(self, lay: Layout, node: NodeLayout, pki: Pki) -> None:
        self.lay, self.node, self.pki = lay, node, pki
        self.kubeconfig = node.config / "netpol.kubeconfig"
        super().__init__(
            f"{node.net.name}/netpol",
            lay.logs,
            in_netns(
                node.net,
                [
                    str(lay.bin("netpol", "netpol")),
                    f"--kubeconfig={self.kubeconfig}",
                    f"--hostname-override={node.net.name}",
                    f"--service-cluster-ip-range={net.SERVICE_CIDR}",
                    "--v=1",
                ],
            ),
        )

    def prepare(self) -> None:
        """Its kubeconfig, and its ClusterRole applied (again, the same, for every node)."""
        write_kubeconfig(self.kubeconfig, self.pki.cert("ca").crt, self.pki.cert("netpol"))
        rbac = self.lay.config / "netpol-rbac.json"
        rbac.write_text(rbac_manifest())
        kubectl = [
            str(self.lay.bin("kubernetes", "kubectl")),
            f"--kubeconfig={self.lay.kubeconfig}",
        ]
        run([*kubectl, "apply", "-f", str(rbac)], "apply the NetworkPolicy enforcer's ClusterRole")

    def ready(self) -> bool:
        """Its top-level chain is in the node's filter table (made before its first sync)."""
        done = subprocess.run(
            in_netns(self.node.net, ["iptables", "-w", "5", "-S", _TOP_CHAIN]),
            capture_output=True,
            timeout=30,
            check=False,
        )
        return done.returncode == 0
