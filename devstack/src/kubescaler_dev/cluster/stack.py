"""`kubescaler-dev cluster up|down|status|apply`: a one-node Kubernetes of real parts, on loopback.

``up`` builds (once, into the cache) and starts etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, containerd, the kubelet and kube-proxy as processes of this machine; then
CoreDNS, metrics-server, KEDA and Traefik as pods; then kubescaler itself from
``manifests/overlays/local`` (the dev overlay, with the few swaps docs/kubernetes.md lists),
its image built here from the Containerfile. Every process it starts is recorded by PID and
every change to the machine in a journal, so ``down`` (from any shell) stops and undoes
exactly that, and an ``up`` after a crash cleans up the leftovers first.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from kubescaler_dev.cassandra import ensure_jars
from kubescaler_dev.cluster import addons, images
from kubescaler_dev.cluster import layout as net
from kubescaler_dev.cluster.components import (
    KUBELET_SYSCTLS,
    Component,
    Containerd,
    Etcd,
    KubeApiserver,
    KubeControllerManager,
    Kubelet,
    KubeProxy,
    KubeScheduler,
    leaves,
    write_kubeconfig,
)
from kubescaler_dev.cluster.gobuild import ensure_built, go_binary, module_source
from kubescaler_dev.cluster.host import Journal, mounts_under, unmount_tree
from kubescaler_dev.cluster.images import ROOT, Image, Images
from kubescaler_dev.cluster.layout import Layout, default_cache
from kubescaler_dev.cluster.pki import Pki
from kubescaler_dev.cluster.progress import ClusterError, Progress, run
from kubescaler_dev.cluster.versions import BUILDS, PROMETHEUS, SOURCES
from kubescaler_dev.proc import StartError, port_open

NAMESPACE = "kubescaler"
OVERLAY = ROOT / "manifests" / "overlays" / "local"
APP_IMAGE = "docker.io/library/kubescaler:0.1.0"  # the manifests' `kubescaler:0.1.0`
RUNC = "/usr/sbin/runc"
CNI_BIN = "/usr/lib/cni"

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
    "unshare": "util-linux",
    "ip": "iproute2",
    "openssl": "openssl",
    "gcc": "gcc",
}


def _exists(tool: str) -> bool:
    return Path(tool).is_file() if tool.startswith("/") else shutil.which(tool) is not None


def check_prerequisites() -> None:
    """One clear line for the first thing missing; nothing is started before this passes."""
    if os.geteuid() != 0:
        raise ClusterError(
            "the local cluster needs root (it makes a network bridge, mounts and cgroups): "
            "run it as root or with sudo"
        )
    missing = sorted({pkg for tool, pkg in PREREQUISITES.items() if not _exists(tool)})
    if missing:
        raise ClusterError(
            f"missing Debian packages for the local cluster: {' '.join(missing)} "
            f"(`apt-get install {' '.join(missing)}`; `./dev` installs them)"
        )
    go_binary()


class NodeBridge:
    """The bridge holding the node address and the pods' veths; forwarding on it alone."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def up(self) -> None:
        if Path(f"/sys/class/net/{net.BRIDGE}").exists():
            raise ClusterError(f"network link {net.BRIDGE} exists: is another cluster running?")
        self.journal.record("link", net.BRIDGE)
        run(["ip", "link", "add", net.BRIDGE, "type", "bridge"], "ip link add")
        run(["ip", "addr", "add", f"{net.NODE_IP}/24", "dev", net.BRIDGE], "ip addr add")
        run(["ip", "link", "set", net.BRIDGE, "up"], "ip link set up")
        # Routing between pods and service addresses, for packets that arrive on this bridge
        # only: the machine's net.ipv4.ip_forward stays as it is. Gone with the bridge.
        Path(f"/proc/sys/net/ipv4/conf/{net.BRIDGE}/forwarding").write_text("1\n")


@contextlib.contextmanager
def exclusive(lay: Layout, progress: Progress) -> Iterator[None]:
    """One cluster command at a time on this machine (two `./dev test` runs, say): the
    second waits for the first, saying so, instead of building or starting beside it. The
    lock is the machine's, not the cache's: the bridge and ports are one per machine even
    for two caches."""
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


class Cluster:
    def __init__(self, cache: Path | None = None, progress: Progress | None = None) -> None:
        self.lay = Layout(cache or default_cache())
        self.progress = progress or Progress()
        self.journal = Journal(self.lay.cache)
        self.pki = Pki(self.lay.pki)
        self.images = Images(self.lay, self.progress)
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

    # ---- helpers ----

    def say(self, message: str) -> None:
        self.progress.say(message)

    def kubectl(self, *args: str, what: str = "", timeout: float = 300) -> str:
        return run(
            [
                str(self.lay.bin("kubernetes", "kubectl")),
                f"--kubeconfig={self.lay.kubeconfig}",
                *args,
            ],
            what or f"kubectl {' '.join(args[:3])}",
            self.progress,
            timeout=timeout,
        )

    def components(self) -> list[Component]:
        lay = self.lay
        return [
            Etcd(lay),
            KubeApiserver(lay, self.pki),
            KubeControllerManager(lay, self.pki),
            KubeScheduler(lay, self.pki),
            Containerd(lay, addons_pause(), RUNC, CNI_BIN),
            Kubelet(lay, self.pki, self.journal),
            KubeProxy(lay, self.pki, self.journal),
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

    # ---- build ----

    def image_catalog(self) -> list[Image]:
        lay, a = self.lay, addons.IMAGES
        minbase = images.ROOTFS["minbase"].ref
        python = images.ROOTFS["python"].ref
        return [
            Image(
                "kubescaler.local/pause:3.10",
                'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n',
                images.pause_context,
            ),
            images.binary_image(a["coredns"], "coredns", "coredns", lay),
            images.binary_image(a["metrics-server"], "metrics-server", "metrics-server", lay),
            images.binary_image(a["keda"], "keda", "keda", lay),
            images.binary_image(a["keda-adapter"], "keda", "keda-adapter", lay),
            images.binary_image(a["traefik"], "traefik", "traefik", lay),
            Image(
                "kubescaler.local/redis:7.0-bookworm",
                f'FROM {images.ROOTFS["redis"].ref}\nUSER 999:999\nCMD ["redis-server"]\n',
                rootfs=("redis",),
            ),
            # the official image's user (nobody) and path (its data goes in /prometheus)
            images.binary_image(
                f"kubescaler.local/prometheus:{PROMETHEUS}",
                "prometheus",
                "prometheus",
                lay,
                user=65534,
                where="/bin",
            ),
            Image(
                "kubescaler.local/cassandra:5.0.8-bookworm",
                f"FROM {images.ROOTFS['cassandra'].ref}\n"
                "RUN groupadd -g 999 cassandra && useradd -u 999 -g 999 -M -d /var/lib/cassandra"
                " cassandra && mkdir -p /var/lib/cassandra /var/log/cassandra /etc/cassandra"
                " && chown 999:999 /var/lib/cassandra /var/log/cassandra\n"
                "COPY lib /opt/cassandra/lib\n"
                "COPY cassandra.yaml.in logback.xml /etc/cassandra/\n"
                "COPY --chmod=755 docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh\n"
                "USER 999:999\n"
                'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]\n',
                images.cassandra_context(lay.cache / "cassandra-lib"),
                rootfs=("cassandra",),
            ),
            Image(
                "kubescaler.local/node:20-bookworm",
                f"FROM {minbase}\nCOPY node /usr/local/bin/node\n"
                "COPY npm /usr/local/lib/node_modules/npm\n"
                "RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm\n"
                "ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt\n",
                images.node_context,
                rootfs=("minbase",),
                load=False,
            ),
            Image(
                "kubescaler.local/python:3.11-bookworm",
                f"FROM {python}\nENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n",
                rootfs=("python",),
                load=False,
            ),
        ]

    def app_image(self) -> Image:
        return Image(
            APP_IMAGE,
            "",
            file=ROOT / "Containerfile",
            build_args={
                "NODE_IMAGE": "kubescaler.local/node:20-bookworm",
                "PYTHON_IMAGE": "kubescaler.local/python:3.11-bookworm",
            },
        )

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
            for fs in images.ROOTFS.values():
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
        for image in self.image_catalog():
            image_id = self.images.build(image)
            if image.load:
                built[image.ref] = image_id
        built[APP_IMAGE] = self.images.build(self.app_image())
        return built

    # ---- up ----

    def running(self) -> bool:
        pids = self.recorded_pids()
        return bool(pids) and all(_alive(pid) for pid in pids.values())

    def up(self, app: bool = True) -> None:
        with self.locked():
            self._up(app)

    def _up(self, app: bool = True) -> None:
        check_prerequisites()
        if self.running():
            self.say("the cluster is already up; `kubescaler-dev cluster down` stops it")
            if app:
                self.apply()
            return
        self.clean_leftovers()
        built = self.build()
        started = time.monotonic()
        try:
            self._start_node(built)
            self._start_addons()
            if app:
                self.apply(built)
        except BaseException:
            self.say("start-up failed: stopping what was started")
            self.down(quiet=True)
            raise
        self.say(f"cluster up in {time.monotonic() - started:.0f}s after the build")

    def _start_node(self, built: dict[str, str]) -> None:
        lay = self.lay
        shutil.rmtree(lay.state, ignore_errors=True)
        for folder in (lay.state, lay.logs, lay.config):
            folder.mkdir(parents=True, exist_ok=True)
        for port in (net.ETCD_PORT, net.ETCD_PEER_PORT, 10248, 10249, 10256, 10257, 10259):
            if port_open(port):
                raise ClusterError(
                    f"port {port} on 127.0.0.1 is in use: another cluster or program"
                )
        if port_open(net.GATEWAY_PORT):
            raise ClusterError(
                f"port {net.GATEWAY_PORT} on 127.0.0.1 is in use: the Gateway needs it"
            )
        # the machine's own kernel settings that the cluster must leave alone (a test compares)
        watched = {key: Path("/proc/sys", key) for key in HOST_SYSCTLS}
        (lay.state / "host-sysctls.json").write_text(
            json.dumps({k: p.read_text().strip() for k, p in watched.items() if p.exists()})
        )
        self.pki.ensure(leaves())
        write_kubeconfig(lay.kubeconfig, self.pki.cert("ca").crt, self.pki.cert("admin"))
        NodeBridge(self.journal).up()
        containerd: Containerd | None = None
        for comp in self.components():
            comp.prepare()
            self.say(f"starting {comp.name}")
            comp.start()
            assert comp.popen is not None
            self._record(comp.name, comp.popen.pid)
            try:
                comp.wait_until(comp.ready, timeout=120)
            except StartError as exc:
                raise ClusterError(str(exc)) from exc
            if isinstance(comp, Containerd):
                containerd = comp
                self.purge_workloads(comp)
                for ref, image_id in built.items():
                    self.images.load(ref, image_id, comp.ctr())
        assert containerd is not None
        self.kubectl(
            "wait",
            "--for=condition=Ready",
            f"node/{net.NODE_NAME}",
            "--timeout=120s",
            what="the node to be Ready",
        )
        self.say(f"node {net.NODE_NAME} is Ready")

    def _start_addons(self) -> None:
        lay = self.lay
        dirs = lay.state / "addons"
        src = {
            name: module_source(mod, ver, lay.cache, self.progress)
            for name, (mod, ver) in SOURCES.items()
        }
        ms_src = module_source(
            "sigs.k8s.io/metrics-server", BUILDS["metrics-server"].version, lay.cache, self.progress
        )
        steps: list[tuple[str, Path]] = [
            ("storage", addons.storage(dirs / "storage", lay.volumes)),
            ("CoreDNS", addons.coredns(dirs / "coredns")),
            ("metrics-server", addons.metrics_server(dirs / "metrics-server", ms_src)),
            ("Gateway API CRDs", addons.gateway_crds(dirs / "gateway-crds", src["gateway-api"])),
            ("KEDA", addons.keda(dirs / "keda", src["keda"])),
        ]
        for name, folder in steps:
            self.say(f"applying {name}")
            self.kubectl(
                "apply",
                "--server-side",
                "--force-conflicts",
                "-k",
                str(folder),
                what=f"apply {name}",
            )
        # the GatewayClass needs the CRDs established first
        self.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all", what="CRDs"
        )
        self.say("applying Traefik")
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-k",
            str(addons.traefik(dirs / "traefik")),
        )
        for ns, deploy in (
            ("kube-system", "coredns"),
            ("kube-system", "metrics-server"),
            ("keda", "keda-operator"),
            ("keda", "keda-metrics-apiserver"),
            ("traefik", "traefik"),
        ):
            self.kubectl(
                "-n",
                ns,
                "rollout",
                "status",
                f"deployment/{deploy}",
                "--timeout=180s",
                what=f"{deploy} to be ready",
                timeout=200,
            )
        self.say("add-ons ready: CoreDNS, metrics-server, KEDA, Traefik")

    def apply(self, built: dict[str, str] | None = None) -> None:
        with self.locked():
            self._apply(built)

    def _apply(self, built: dict[str, str] | None = None) -> None:
        """Build the images that changed (kubescaler's from the working tree), load them,
        apply the local overlay, restart what runs an image that changed, and wait."""
        changed = False
        if built is None:  # up loaded everything just before; a later apply checks again
            built = self._build_images()
            ctr = self._ctr()
            loaded = [ref for ref, i in built.items() if self.images.load(ref, i, ctr)]
            changed = bool(loaded)
        self.say(f"applying {OVERLAY.relative_to(ROOT)}")
        self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-k", str(OVERLAY),
            what="apply kubescaler",
        )  # fmt: skip
        if changed:
            self.kubectl(
                "-n", NAMESPACE, "rollout", "restart", "deployment,statefulset",
                what="restart on the new images",
            )  # fmt: skip
        self.wait_app()

    def wait_app(self, timeout: float = 600) -> None:
        self.say("waiting for kubescaler's pods (Cassandra's first start takes a minute or two)")
        for kind, name in (
            ("statefulset", "redis"),
            ("statefulset", "cassandra"),
            ("deployment", "base"),
            ("deployment", "main"),
            ("deployment", "lock-keeper"),
            ("deployment", "stream"),
            ("deployment", "prometheus"),
        ):
            try:
                self.kubectl(
                    "-n",
                    NAMESPACE,
                    "rollout",
                    "status",
                    f"{kind}/{name}",
                    f"--timeout={int(timeout)}s",
                    what=f"{name} to be ready",
                    timeout=timeout + 30,
                )
            except ClusterError as exc:
                raise ClusterError(f"{exc}\n{self.diagnose(NAMESPACE)}") from exc
        self.wait_gateway()
        self.say(
            f"kubescaler is up: http://127.0.0.1:{net.GATEWAY_PORT}/ (dashboard), "
            f"http://127.0.0.1:{net.GATEWAY_PORT}/main/profiles"
        )

    #: what must answer 200 through the Gateway before kubescaler counts as up: main with
    #: base and Cassandra behind it, and a stream instance
    GATEWAY_CHECKS = ("/main/profiles?limit=1", "/instance")

    def wait_gateway(self, timeout: float = 180) -> None:
        """Ready pods are not yet reachable ones: Traefik learns the endpoints a moment later,
        and on a first start base may still be making the keyspace. Wait until each of
        GATEWAY_CHECKS answers 200 through the Gateway."""
        base = f"http://127.0.0.1:{net.GATEWAY_PORT}"
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=base, timeout=10) as http:
            for path in self.GATEWAY_CHECKS:
                while True:
                    try:
                        r = http.get(path)
                        if r.status_code == 200:
                            break
                        last = f"{r.status_code} {r.text[:300]}"
                    except httpx.HTTPError as exc:
                        last = repr(exc)
                    if time.monotonic() > deadline:
                        raise ClusterError(
                            f"the pods are ready but {base}{path} does not answer 200 after "
                            f"{timeout:.0f}s (last: {last})\n{self.diagnose(NAMESPACE)}"
                        )
                    time.sleep(1)

    def diagnose(self, namespace: str) -> str:
        """What a user needs when pods do not come up: their state, the latest warnings, and
        the last log lines of each container that is not ready."""
        kubectl = [
            str(self.lay.bin("kubernetes", "kubectl")),
            f"--kubeconfig={self.lay.kubeconfig}",
        ]

        def get(*args: str) -> str:
            done = subprocess.run(
                [*kubectl, "-n", namespace, *args],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            return done.stdout or done.stderr

        warnings = get("get", "events", "--field-selector=type=Warning", "--sort-by=.lastTimestamp")
        out = [get("get", "pods", "-o", "wide"), *warnings.splitlines()[-10:]]
        with contextlib.suppress(ValueError):
            for pod in json.loads(get("get", "pods", "-o", "json"))["items"]:
                for status in pod["status"].get("containerStatuses", []):
                    if not status.get("ready"):
                        name = pod["metadata"]["name"]
                        logs = get("logs", "--tail=15", name, "-c", status["name"])
                        out.append(f"--- {name}/{status['name']} (not ready) ---\n{logs}")
        return "\n".join(out)

    def _ctr(self) -> list[str]:
        return Containerd(self.lay, addons_pause(), RUNC, CNI_BIN).ctr()

    def purge_workloads(self, containerd: Containerd) -> None:
        """Remove the containers a previous run left in containerd's store (a fresh etcd knows
        none of them); images stay."""
        ctr = containerd.ctr()
        for task in run([*ctr, "tasks", "ls", "-q"], "ctr tasks ls").split():
            subprocess.run(
                [*ctr, "tasks", "kill", "-s", "SIGKILL", task], capture_output=True, check=False
            )
            subprocess.run([*ctr, "tasks", "delete", "-f", task], capture_output=True, check=False)
        for container in run([*ctr, "containers", "ls", "-q"], "ctr containers ls").split():
            subprocess.run(
                [*ctr, "containers", "delete", container], capture_output=True, check=False
            )

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
        for name in reversed(list(pids)):
            if name == "kubelet":
                self._kill_pods()
            pid = pids[name]
            if _alive(pid):
                if not quiet:
                    self.say(f"stopping {name} (pid {pid})")
                _stop(pid)
        self._kill_pods()
        self._kill_shims()
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

    def _kill_pods(self) -> None:
        """SIGKILL every process in the kubelet's pod cgroups.

        The tree is walked with os.walk, which skips what vanishes meanwhile: the cgroups of
        containers that exit while we look (a glob raised FileNotFoundError on one)."""
        for hierarchy in Path("/sys/fs/cgroup").glob("*/kubepods"):
            for folder, _, files in os.walk(hierarchy):
                if "cgroup.procs" not in files:
                    continue
                with contextlib.suppress(OSError):
                    for pid in Path(folder, "cgroup.procs").read_text().split():
                        with contextlib.suppress(ProcessLookupError, ValueError):
                            os.kill(int(pid), signal.SIGKILL)

    def _kill_shims(self) -> None:
        """containerd's shims for this cluster (found by our socket in their command line)."""
        needle = str(self.lay.containerd_state).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes()
                if b"containerd-shim" in cmdline and needle in cmdline:
                    os.kill(int(proc.name), signal.SIGKILL)

    # ---- status ----

    def status(self) -> dict[str, object]:
        pids = self.recorded_pids()
        report: dict[str, object] = {
            "cache": str(self.lay.cache),
            "processes": {
                name: ("running" if _alive(pid) else "gone") + f" (pid {pid})"
                for name, pid in pids.items()
            },
            "up": self.running(),
        }
        if self.running():
            with contextlib.suppress(ClusterError):
                report["pods"] = self.kubectl(
                    "get", "pods", "-A", "-o", "wide", what="kubectl get pods"
                )
            report["gateway"] = f"http://127.0.0.1:{net.GATEWAY_PORT}/"
            report["kubeconfig"] = str(self.lay.kubeconfig)
        return report


def addons_pause() -> str:
    return "kubescaler.local/pause:3.10"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def _stop(pid: int, timeout: float = 30.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
