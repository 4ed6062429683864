"""Last of the cluster tests (conftest orders this module last): the machine is left as found,
after a run and after a crash."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from kubehelp import Kube

from kubescaler_dev.cluster import layout
from kubescaler_dev.cluster.host import mounts_under
from kubescaler_dev.cluster.stack import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]


def test_the_cluster_leaves_the_machines_kernel_settings_alone(cluster: Cluster) -> None:
    """The kubelet saw its expected values through its own mount namespace; the machine kept
    its own (forwarding, panic behaviour, overcommit)."""
    before = json.loads((cluster.lay.state / "host-sysctls.json").read_text())
    now = {key: Path("/proc/sys", key).read_text().strip() for key in before}
    assert now == before


def test_after_a_crash_up_cleans_the_leftovers_and_down_leaves_the_machine_as_found(
    cluster: Cluster,
) -> None:
    """Every cluster process SIGKILLed (a crash: pods, mounts, the bridge, the nodes'
    namespaces and cgroups left behind): the next `up` cleans them first and comes up with as
    many nodes; `down` then leaves no process, mount, link, namespace, nftables table or cgroup
    of the cluster."""
    count = cluster.node_count()
    for pid in cluster.recorded_pids().values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    assert Path(f"/sys/class/net/{layout.BRIDGE}").exists()  # left behind
    assert Path(f"/run/netns/{layout.NodeNet(1).netns}").exists()

    # its state is all on disk: as a new process after the crash sees it
    cluster.up(app=False, nodes=count)
    assert cluster.running()
    kube = Kube(cluster)
    for node in cluster.nodes():
        kube.run("wait", "--for=condition=Ready", f"node/{node.name}", "--timeout=60s")

    pids = cluster.recorded_pids()
    assert cluster.down() == []
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids.values())
    assert not Path(f"/sys/class/net/{layout.BRIDGE}").exists()
    assert not list(Path("/run/netns").glob("ks-node-*"))
    assert mounts_under(cluster.lay.state) == []
    tables = subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=True
    ).stdout
    assert "kube-proxy" not in tables
    cgroups = Path("/sys/fs/cgroup")
    assert not [*cgroups.glob("*/kubepods"), *cgroups.glob("*/ks-node-*")]
    assert not cluster.journal.entries()
