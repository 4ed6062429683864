"""A node's container runtime: containerd with the CRI plugin, Debian's runc and the CNI bridge.

Each node has its own containerd (root, state, socket, runc root, CNI config and IP pool),
running in the node's network namespace, so the CNI plugins it calls make the pods' veths
there. Its image store lives in the cache: images imported once stay for the next run.
"""

from __future__ import annotations

import os
import subprocess

from kubescaler_dev.cluster.cni import CNI_BIN, conflist, in_netns
from kubescaler_dev.cluster.component import Component
from kubescaler_dev.cluster.layout import Layout, NodeLayout
from kubescaler_dev.cluster.progress import run
from kubescaler_dev.cluster.versions import IMAGES

RUNC = "/usr/sbin/runc"


class Containerd(Component):
    def __init__(self, lay: Layout, node: NodeLayout) -> None:
        self.node = node
        self.config_file = node.config / "containerd.toml"
        self.bin_dir = lay.bin("containerd", "containerd").parent
        super().__init__(
            f"{node.net.name}/containerd",
            lay.logs,
            in_netns(
                node.net, [str(self.bin_dir / "containerd"), "--config", str(self.config_file)]
            ),
            # the shim is found on PATH
            env={
                "PATH": f"{self.bin_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
            },
        )

    def ctr(self) -> list[str]:
        return [
            str(self.bin_dir / "ctr"),
            "--address",
            str(self.node.containerd_socket),
            "--namespace",
            "k8s.io",
        ]

    def prepare(self) -> None:
        node = self.node
        state = node.containerd_state
        cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
        cni_dir = node.config / "cni"
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            f"""version = 3
root = "{node.containerd_root}"
state = "{state / "state"}"
temp = "{state / "tmp"}"

[grpc]
  address = "{node.containerd_socket}"

[ttrpc]
  address = "{state / "containerd.sock.ttrpc"}"

[metrics]
  address = ""

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{IMAGES["pause"]}"

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
        BinaryName = "{RUNC}"
        Root = "{state / "runc"}"
        SystemdCgroup = false
  [{cri_runtime}.cni]
    bin_dirs = ["{CNI_BIN}"]
    conf_dir = "{cni_dir}"
    max_conf_num = 1
    # containerd brings each pod's `lo` up itself
    use_internal_loopback = true

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""
        )
        cni_dir.mkdir(parents=True, exist_ok=True)
        (cni_dir / "10-kubescaler.conflist").write_text(conflist(node.net, state / "ipam"))

    def ready(self) -> bool:
        if not self.node.containerd_socket.exists():
            return False
        done = subprocess.run(
            [*self.ctr(), "version"], capture_output=True, timeout=10, check=False
        )
        return done.returncode == 0

    def purge_workloads(self) -> None:
        """Remove the containers a previous run left in this store (a fresh etcd knows none
        of them); images stay."""
        ctr = self.ctr()
        for task in run([*ctr, "tasks", "ls", "-q"], "ctr tasks ls").split():
            subprocess.run(
                [*ctr, "tasks", "kill", "-s", "SIGKILL", task], capture_output=True, check=False
            )
            subprocess.run([*ctr, "tasks", "delete", "-f", task], capture_output=True, check=False)
        for container in run([*ctr, "containers", "ls", "-q"], "ctr containers ls").split():
            subprocess.run(
                [*ctr, "containers", "delete", container], capture_output=True, check=False
            )
