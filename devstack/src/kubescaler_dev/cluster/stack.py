"""`kubescaler-dev cluster`: a Kubernetes of real parts on this machine, one to nine nodes.

The orchestrator sequences the rooms: ``build`` (gobuild.py, images.py, catalog.py), ``up``
(controlplane.py; per node cni.py, containerd.py, kubelet.py, netpol.py; loadbalancer.py; the
add-ons: storage.py, dns.py, metrics_server.py, gateway.py, keda.py; app.py), ``down`` (all in
reverse, then the journal's undo, host.py), a node's faults (node.py). Every process it starts
is recorded by PID and every change to the machine in a journal, so ``down`` (from any shell)
stops and undoes exactly that, and an ``up`` after a crash first cleans up what is left.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from kubescaler_dev.cassandra import ensure_jars
from kubescaler_dev.cluster import layout as net
from kubescaler_dev.cluster.app import GATEWAY, NAMESPACE, App
from kubescaler_dev.cluster.catalog import app_image, catalog
from kubescaler_dev.cluster.cni import HostBridge
from kubescaler_dev.cluster.component import Component, alive, stop_group, write_kubeconfig
from kubescaler_dev.cluster.controlplane import control_plane
from kubescaler_dev.cluster.dns import coredns
from kubescaler_dev.cluster.gateway import gateway_crds, traefik
from kubescaler_dev.cluster.gobuild import ensure_built, module_source
from kubescaler_dev.cluster.host import Journal, mounts_under, unmount_tree
from kubescaler_dev.cluster.images import ROOTFS, Images, Store
from kubescaler_dev.cluster.keda import keda
from kubescaler_dev.cluster.kubectl import Kubectl
from kubescaler_dev.cluster.kustomize import AddOn
from kubescaler_dev.cluster.layout import Layout, NodeNet, default_cache
from kubescaler_dev.cluster.loadbalancer import LoadBalancer
from kubescaler_dev.cluster.machine import HOST_SYSCTLS, check_prerequisites, exclusive
from kubescaler_dev.cluster.metrics_server import metrics_server
from kubescaler_dev.cluster.node import Node, recorded
from kubescaler_dev.cluster.pki import Pki, leaves
from kubescaler_dev.cluster.progress import ClusterError, Progress
from kubescaler_dev.cluster.storage import storage
from kubescaler_dev.cluster.versions import BUILDS, SOURCES
from kubescaler_dev.proc import StartError, port_open

__all__ = ["NAMESPACE", "Cluster", "check_prerequisites"]


class Cluster:
    def __init__(self, cache: Path | None = None, progress: Progress | None = None) -> None:
        self.lay = Layout(cache or default_cache())
        self.progress = progress or Progress()
        self.journal = Journal(self.lay.cache)
        self.pki = Pki(self.lay.pki)
        self.images = Images(self.lay, self.progress)
        self.kubectl = Kubectl(self.lay, self.progress)
        self.app = App(self.kubectl, self.progress, self.pki)
        self._held = 0

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """`exclusive`, re-entrant within this object (up calls down when it fails)."""
        if self._held:
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
            return
        with exclusive(self.lay, self.progress):
            self._held = 1
            try:
                yield
            finally:
                self._held = 0

    def say(self, message: str) -> None:
        self.progress.say(message)

    # ---- what runs ----

    def node_count(self) -> int:
        with contextlib.suppress(OSError, ValueError):
            return int(self.lay.nodes_file.read_text())
        return 1

    def nodes(self, count: int | None = None) -> list[Node]:
        count = count or self.node_count()
        peers = [NodeNet(i) for i in range(1, count + 1)]
        return [Node(self.lay, i, peers, self.pki, self.journal) for i in range(1, count + 1)]

    def node(self, index: int) -> Node:
        count = self.node_count()
        if not 1 <= index <= count:
            raise ClusterError(f"no node {index}: this cluster has nodes 1 to {count}")
        return self.nodes(count)[index - 1]

    def stores(self, nodes: list[Node]) -> list[Store]:
        return [
            Store(n.name, n.containerd.ctr(), n.lay.cache / f"{n.lay.containerd_root.name}.json")
            for n in nodes
        ]

    def recorded_pids(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads(self.lay.pids.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def _record(self, name: str, pid: int) -> None:
        pids = self.recorded_pids()
        pids[name] = pid
        self.lay.pids.write_text(json.dumps(pids, indent=2) + "\n")

    def running(self) -> bool:
        """The control plane runs (a lost node's agents may not: the cluster is still up)."""
        pids = self.recorded_pids()
        control = [pids.get(name) for name in ("etcd", "kube-apiserver")]
        return all(pid is not None and alive(pid) for pid in control)

    def _start(self, comp: Component, timeout: float = 120) -> None:
        comp.prepare()
        self.say(f"starting {comp.name}")
        comp.start()
        assert comp.popen is not None
        self._record(comp.name, comp.popen.pid)
        try:
            comp.wait_until(comp.ready, timeout=timeout)
        except StartError as exc:
            raise ClusterError(str(exc)) from exc

    # ---- build ----

    def build(self) -> dict[str, str]:
        with self.locked():
            return self._build()

    def _build(self) -> dict[str, str]:
        """Every binary and image, from the cache when it is there; image reference -> ID.

        Root filesystems and Cassandra's jars (network and disk bound) come in a thread beside
        the Go builds (CPU bound), so a cold machine waits for the longer, not the sum.
        """
        self.say(f"cache: {self.lay.cache}")

        def downloads() -> None:
            for fs in ROOTFS.values():
                self.images.ensure_rootfs(fs)
            ensure_jars(self.lay.cache / "cassandra-lib")

        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            rootfs = pool.submit(downloads)
            for build in BUILDS.values():
                ensure_built(build, self.lay.cache, self.progress)
            rootfs.result()
        return self._build_images()

    def _build_images(self) -> dict[str, str]:
        """Every image (podman's layer cache makes an unchanged one instant); what pods run,
        reference -> ID."""
        built = {}
        for image in catalog(self.lay):
            image_id = self.images.build(image)
            if image.load:
                built[image.ref] = image_id
        app = app_image()
        built[app.ref] = self.images.build(app)
        return built

    # ---- up ----

    def up(self, app: bool = True, nodes: int = 1) -> None:
        if not 1 <= nodes <= net.MAX_NODES:
            raise ClusterError(f"--nodes must be 1 to {net.MAX_NODES}, not {nodes}")
        with self.locked():
            self._up(app, nodes)

    def _up(self, app: bool, nodes: int) -> None:
        check_prerequisites()
        if self.running():
            if nodes != self.node_count():
                raise ClusterError(
                    f"the cluster is up with {self.node_count()} node(s), not {nodes}: "
                    "`kubescaler-dev cluster down` first"
                )
            self.say("the cluster is already up; `kubescaler-dev cluster down` stops it")
            if app:
                self.apply()
            return
        self.clean_leftovers()
        built = self.build()
        started = time.monotonic()
        try:
            self._start_machines(built, nodes)
            self._start_addons()
            if app:
                self.app.apply()
        except BaseException:
            self.say("start-up failed: stopping what was started")
            self.down(quiet=True)
            raise
        self.say(f"cluster up in {time.monotonic() - started:.0f}s after the build")

    def _start_machines(self, built: dict[str, str], count: int) -> None:
        lay = self.lay
        shutil.rmtree(lay.state, ignore_errors=True)
        for folder in (lay.state, lay.logs, lay.config):
            folder.mkdir(parents=True, exist_ok=True)
        lay.nodes_file.write_text(f"{count}\n")
        busy = (net.ETCD_PORT, net.ETCD_PEER_PORT, net.CONTROLLER_MANAGER_PORT,
                net.SCHEDULER_PORT, net.GATEWAY_PORT, net.GATEWAY_TLS_PORT)  # fmt: skip
        for port in busy:
            if port_open(port):
                raise ClusterError(f"port {port} on 127.0.0.1 is in use: another program")
        # the machine's own kernel settings that the cluster must leave alone (a test compares)
        watched = {key: Path("/proc/sys", key) for key in HOST_SYSCTLS}
        (lay.state / "host-sysctls.json").write_text(
            json.dumps({k: p.read_text().strip() for k, p in watched.items() if p.exists()})
        )
        nodes = self.nodes(count)
        self.pki.ensure(leaves([n.net for n in nodes]))
        write_kubeconfig(lay.kubeconfig, self.pki.cert("ca").crt, self.pki.cert("admin"))
        HostBridge(self.journal).up()
        for comp in control_plane(lay, self.pki):
            self._start(comp)
        for node in nodes:
            node.network.up()
        for node in nodes:
            self._start(node.containerd)
            node.containerd.purge_workloads()
        self.images.load(built, self.stores(nodes))
        for node in nodes:
            self._start(node.kubelet)
            self._start(node.kube_proxy)
        for node in nodes:
            self.kubectl(
                "wait", "--for=condition=Ready", f"node/{node.name}", "--timeout=120s",
                what=f"node {node.name} to be Ready",
            )  # fmt: skip
            self._start(node.netpol)  # it reads its Node object, which Ready shows is there
        self.say(f"nodes Ready: {', '.join(n.name for n in nodes)}")
        self._start(LoadBalancer(lay, [n.net for n in nodes]), timeout=30)

    def addons(self) -> list[AddOn]:
        lay, dirs = self.lay, self.lay.state / "addons"
        src = {
            name: module_source(mod, ver, lay.cache, self.progress)
            for name, (mod, ver) in SOURCES.items()
        }
        ms_src = module_source(
            "sigs.k8s.io/metrics-server", BUILDS["metrics-server"].version, lay.cache, self.progress
        )
        return [
            storage(dirs / "storage", [n.lay for n in self.nodes()]),
            coredns(dirs / "coredns", self.node_count()),
            metrics_server(dirs / "metrics-server", ms_src),
            gateway_crds(dirs / "gateway-crds", src["gateway-api"]),
            keda(dirs / "keda", src["keda"]),
            traefik(dirs / "traefik"),
        ]

    def _start_addons(self) -> None:
        addons = self.addons()
        for addon in addons:
            if addon.name == "Traefik":  # its GatewayClass needs the CRDs established first
                self.kubectl(
                    "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all",
                    what="CRDs",
                )  # fmt: skip
            self.say(f"applying {addon.name}")
            self.kubectl.apply(str(addon.folder), what=f"apply {addon.name}")
        for addon in addons:
            for namespace, workload in addon.rollouts:
                self.kubectl.rollout(namespace, workload)
        self.say("add-ons ready: " + ", ".join(a.name for a in addons))

    def recycle_volumes(self) -> list[str]:
        """Local volumes whose claims are gone (Released: a namespace deleted) made empty and
        Available again, as a cloud's dynamic provisioner gives a new claim a new disk; their
        names."""
        released = self.kubectl(
            "get", "pv", "-o",
            "jsonpath={range .items[?(@.status.phase=='Released')]}{.metadata.name} "
            "{.spec.local.path}{'\\n'}{end}",
            what="released volumes",
        )  # fmt: skip
        names = []
        for line in released.splitlines():
            name, path = line.split()
            self.kubectl("delete", "pv", name, "--wait=true", what=f"delete {name}")
            shutil.rmtree(path, ignore_errors=True)
            names.append(name)
        if names:
            storage_addon = storage(
                self.lay.state / "addons" / "storage", [n.lay for n in self.nodes()]
            )
            self.kubectl.apply(str(storage_addon.folder), what="apply storage")
        return names

    def apply(self) -> None:
        """Build the images that changed (kubescaler's from the working tree), load them into
        every node, apply the local overlay, restart what runs an image that changed."""
        with self.locked():
            loaded = self.images.load(self._build_images(), self.stores(self.nodes()))
            self.app.apply(restart=bool(loaded))

    # ---- a node's faults ----

    def lose(self, index: int) -> None:
        with self.locked():
            node = self.node(index)
            self.say(f"losing node {node.name}: its network cut, every process of it killed")
            node.lose(recorded(self.recorded_pids(), node.name))

    def crash(self, index: int, pod_uid: str, container_id: str) -> list[int]:
        """One container of a pod on node ``index`` killed (SIGKILL); its processes."""
        return self.node(index).crash(pod_uid, container_id)

    def freeze(self, index: int) -> None:
        with self.locked():
            node = self.node(index)
            self.say(f"freezing node {node.name}: every process of it stopped (SIGSTOP)")
            node.freeze(recorded(self.recorded_pids(), node.name))

    def resume(self, index: int) -> None:
        with self.locked():
            node = self.node(index)
            self.say(f"resuming node {node.name}")
            node.resume(recorded(self.recorded_pids(), node.name))

    def back(self, index: int) -> None:
        """A lost node comes back: its network, then its agents on the same disk."""
        with self.locked():
            node = self.node(index)
            self.say(f"bringing node {node.name} back")
            node.come_back(self._start)

    # ---- down ----

    def clean_leftovers(self) -> None:
        if self.recorded_pids() or self.journal.entries():
            self.say("cleaning up after an earlier run that did not stop cleanly")
            self.down(quiet=True)

    def down(self, quiet: bool = False) -> list[str]:
        with self.locked():
            return self._down(quiet)

    def _down(self, quiet: bool = False) -> list[str]:
        """Stop every recorded process (newest first), then undo every recorded change."""
        pids = self.recorded_pids()
        nodes = self.nodes()
        for node in nodes:  # a frozen node's processes must run to hear SIGTERM
            node.resume(recorded(pids, node.name))
        for name in reversed(list(pids)):
            for node in nodes:  # a node's pods before its kubelet, which would restart them
                if name == f"{node.name}/kubelet":
                    node.signal_all(signal.SIGKILL, {})
            if alive(pids[name]):
                if not quiet:
                    self.say(f"stopping {name} (pid {pids[name]})")
                stop_group(pids[name])
        for node in nodes:
            node.signal_all(signal.SIGKILL, {})
        unmount_tree(self.lay.state)
        problems = self.journal.undo(self.progress)
        with contextlib.suppress(OSError):
            self.lay.pids.unlink()
        leftover = mounts_under(self.lay.state)
        if leftover:
            problems.append(f"mounts left under {self.lay.state}: {leftover[:3]}")
        if not quiet:
            self.say(
                "stopped; the machine is as before"
                if not problems
                else "stopped, with problems above"
            )
        return problems

    # ---- status ----

    def status(self) -> dict[str, object]:
        pids = self.recorded_pids()
        report: dict[str, object] = {
            "cache": str(self.lay.cache),
            "nodes": self.node_count(),
            "processes": {
                name: ("running" if alive(pid) else "gone") + f" (pid {pid})"
                for name, pid in pids.items()
            },
            "up": self.running(),
        }
        if self.running():
            with contextlib.suppress(ClusterError):
                report["pods"] = self.kubectl("get", "pods", "-A", "-o", "wide", what="get pods")
            report["gateway"] = f"{GATEWAY}/ (its CA: {self.pki.cert('gateway-ca').crt})"
            report["kubeconfig"] = str(self.lay.kubeconfig)
        return report
