"""Container images without a registry: made here, loaded into the cluster's containerd.

- **Root filesystems from Debian packages** (``mmdebstrap --variant=minbase``), imported into
  podman: stand-ins for the public base images the Containerfile names (python, node) and for
  the images the manifests run beside ours (Redis, Cassandra).
- **kubescaler's own image** from the project's ``Containerfile``, unchanged: its base images
  are build arguments, given the local stand-ins here (defaults: the public images).
- **Single-binary images** (``FROM scratch``) for what was built from Go modules: CoreDNS,
  metrics-server, KEDA, Traefik, Prometheus, and a static C ``pause`` for the pod sandboxes.

Each image is saved as an archive and imported into containerd's ``k8s.io`` namespace under
the exact reference the manifests use, so nothing is ever pulled. A journal of what was
imported (by podman image ID) skips an unchanged image next time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubescaler_dev.cluster.layout import Layout
from kubescaler_dev.cluster.progress import ClusterError, Progress, run
from kubescaler_dev.cluster.versions import DEBIAN_SUITE

ROOT = Path(__file__).resolve().parents[4]
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

#: podman's settings for this machine: its default ulimits exceed the hard limits here, crun
#: refuses this cgroup hybrid, and there is no systemd for cgroups or the event log
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

PAUSE_C = r"""/* the pod sandbox: holds the pod's namespaces, reaps orphans, exits on TERM/INT */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void bye(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
    signal(SIGINT, bye);
    signal(SIGTERM, bye);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
"""


@dataclass(frozen=True)
class Rootfs:
    """A Debian root filesystem: minbase plus ``packages``, imported into podman as ``ref``."""

    name: str
    packages: tuple[str, ...]
    remove: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        recipe = repr((DEBIAN_SUITE, sorted(self.packages), self.remove))
        return f"{self.name}-{hashlib.sha256(recipe.encode()).hexdigest()[:10]}"

    @property
    def ref(self) -> str:
        return f"kubescaler.local/rootfs-{self.name}:{self.key.rsplit('-', 1)[1]}"


ROOTFS = {
    fs.name: fs
    for fs in (
        Rootfs("minbase", ("ca-certificates",)),
        # stand-in for python:3.11-slim-bookworm (Debian's 3.11, with `python` and pip)
        Rootfs(
            "python",
            ("ca-certificates", "python3", "python3-pip", "python3-venv", "python-is-python3"),
            remove=("usr/lib/python3.11/EXTERNALLY-MANAGED",),
        ),
        Rootfs("redis", ("redis-server",)),
        Rootfs("cassandra", ("openjdk-17-jre-headless", "procps")),
    )
}


@dataclass
class Image:
    """One image: a build context made by ``context(dir)``, a Containerfile, a reference."""

    ref: str
    containerfile: str
    context: Callable[[Path], None] = lambda _: None
    rootfs: tuple[str, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    file: Path | None = None  # a Containerfile of the project, used as is
    #: False for the base images of a build, which no pod runs
    load: bool = True


class Images:
    """Builds images with podman and loads them into containerd."""

    def __init__(self, lay: Layout, progress: Progress) -> None:
        self.lay = lay
        self.progress = progress
        self.dir = lay.cache / "images"
        self.conf = lay.cache / "containers.conf"

    # ---- podman ----

    def podman_env(self) -> dict[str, str]:
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        if not self.conf.is_file() or self.conf.read_text() != CONTAINERS_CONF:
            self.conf.write_text(CONTAINERS_CONF)
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def podman(self, *args: str, what: str, timeout: float = 1800) -> str:
        return run(
            ["podman", *args], what, self.progress, env=self.podman_env(), timeout=timeout
        ).strip()

    def image_id(self, ref: str) -> str | None:
        try:
            return self.podman(
                "image", "inspect", "--format", "{{.Id}}", ref, what="podman inspect"
            )
        except ClusterError:
            return None

    # ---- root filesystems ----

    def ensure_rootfs(self, fs: Rootfs) -> str:
        """``fs`` as a podman image (made with mmdebstrap the first time); its reference."""
        if self.image_id(fs.ref):
            return fs.ref
        tar = self.dir / f"{fs.key}.tar"
        if not tar.is_file():
            self.progress.say(f"making the {fs.name} root filesystem from Debian packages")
            self.dir.mkdir(parents=True, exist_ok=True)
            # a name of its own, renamed into place when whole: never a half-written tar
            partial = Path(tempfile.mktemp(prefix=f".{fs.key}-", suffix=".tar", dir=self.dir))
            argv = [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                f"--include={','.join(fs.packages)}",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                # update-alternatives (Java's) links man pages into this folder; it must exist
                '--setup-hook=mkdir -p "$1/usr/share/man/man1"',
                "--customize-hook=rm -rf $1/var/lib/apt/lists/* $1/var/cache/apt/*",
            ]
            argv += [f"--customize-hook=rm -f $1/{path}" for path in fs.remove]
            argv += ["--format=tar", DEBIAN_SUITE, str(partial)]
            # the machine's own Debian sources (mirror and security updates), when it has them
            sources = Path("/etc/apt/sources.list.d/debian.sources")
            if sources.is_file():
                argv.append(str(sources))
            try:
                run(argv, f"mmdebstrap {fs.name}", self.progress, timeout=1800)
                partial.rename(tar)
            finally:
                partial.unlink(missing_ok=True)
        self.podman(
            "import",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "CMD /bin/sh",
            str(tar),
            fs.ref,
            what=f"podman import {fs.name}",
        )
        return fs.ref

    # ---- images ----

    def build(self, image: Image) -> str:
        """Build ``image`` (podman's layer cache makes an unchanged one instant); its ID."""
        for name in image.rootfs:
            self.ensure_rootfs(ROOTFS[name])
        with tempfile.TemporaryDirectory(prefix="kubescaler-image-") as tmp:
            ctx = Path(tmp)
            if image.file is None:
                (ctx / "Containerfile").write_text(image.containerfile)
                image.context(ctx)
                context, containerfile = ctx, ctx / "Containerfile"
            else:
                context, containerfile = ROOT, image.file
            args = ["build", "--pull=never", "--network=host", "--layers", "-t", image.ref]
            args += ["-f", str(containerfile)]
            for key, value in image.build_args.items():
                args += ["--build-arg", f"{key}={value}"]
            if HOST_CA_BUNDLE.is_file():
                # registries are reached through this machine's CA bundle; mounted for the
                # build's RUN steps only, never baked into the image
                args += ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
            self.progress.say(f"building image {image.ref}")
            self.podman(*args, str(context), what=f"podman build {image.ref}")
        found = self.image_id(image.ref)
        if found is None:
            raise ClusterError(f"podman built {image.ref} but cannot find it")
        return found

    def load(self, ref: str, image_id: str, ctr: list[str]) -> bool:
        """Import ``ref`` into containerd unless this ID is there already; True if imported."""
        record = self.lay.cache / "containerd-imported.json"
        imported = json.loads(record.read_text()) if record.is_file() else {}
        listed = run([*ctr, "images", "ls", "-q"], "ctr images ls").split()
        if imported.get(ref) == image_id and _normal(ref) in listed:
            return False
        self.progress.say(f"loading {ref} into containerd")
        archive = self.dir / "archive.tar"
        archive.unlink(missing_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self.podman(
                "save", "--format", "docker-archive", "-o", str(archive), ref, what="podman save"
            )
            run(
                [*ctr, "images", "import", "--no-unpack=false", str(archive)],
                f"ctr import {ref}",
                self.progress,
            )
        finally:
            archive.unlink(missing_ok=True)
        imported[ref] = image_id
        record.write_text(json.dumps(imported, indent=2, sort_keys=True) + "\n")
        return True


def _normal(ref: str) -> str:
    """containerd's full name of ``ref`` (``redis:7`` -> ``docker.io/library/redis:7``)."""
    name = ref
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return name


def pause_context(ctx: Path) -> None:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise ClusterError("gcc not found: the pod sandbox's pause binary is built with gcc")
    (ctx / "pause.c").write_text(PAUSE_C)
    run([gcc, "-static", "-Os", "-o", str(ctx / "pause"), str(ctx / "pause.c")], "gcc pause")
    run(["strip", str(ctx / "pause")], "strip pause")


def binary_context(build: str, name: str, lay: Layout) -> Callable[[Path], None]:
    def make(ctx: Path) -> None:
        shutil.copy2(lay.bin(build, name), ctx / name)
        (ctx / "tmp").mkdir()

    return make


def binary_image(
    ref: str, build: str, name: str, lay: Layout, user: int = 65532, where: str = "/"
) -> Image:
    """A ``FROM scratch`` image holding one static Go binary at ``where``, run as non-root."""
    path = f"{where.rstrip('/')}/{name}"
    return Image(
        ref=ref,
        containerfile=(
            f"FROM scratch\nCOPY {name} {path}\nCOPY --chmod=1777 tmp /tmp\n"
            f'USER {user}:{user}\nENTRYPOINT ["{path}"]\n'
        ),
        context=binary_context(build, name, lay),
    )


CASSANDRA_YAML = """# Written by the image's entrypoint from cassandra.yaml.in on every start.
cluster_name: "@CLUSTER_NAME@"
num_tokens: @NUM_TOKENS@
allocate_tokens_for_local_replication_factor: 3
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: @SNITCH@
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "@SEEDS@"
listen_address: @LISTEN@
broadcast_rpc_address: @LISTEN@
rpc_address: 0.0.0.0
storage_port: 7000
start_native_transport: true
native_transport_port: 9042
data_file_directories: ["/var/lib/cassandra/data"]
commitlog_directory: /var/lib/cassandra/commitlog
saved_caches_directory: /var/lib/cassandra/saved_caches
hints_directory: /var/lib/cassandra/hints
cdc_raw_directory: /var/lib/cassandra/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
auto_snapshot: false
concurrent_reads: 8
concurrent_writes: 8
concurrent_compactors: 1
"""

CASSANDRA_ENTRYPOINT = """#!/bin/sh
# The local Cassandra stand-in's entrypoint: the official image's environment variables
# (CASSANDRA_CLUSTER_NAME, _SEEDS, _ENDPOINT_SNITCH, _DC, _RACK, _NUM_TOKENS, MAX_HEAP_SIZE,
# HEAP_NEWSIZE) written into /etc/cassandra, then the daemon in the foreground.
set -eu
conf=/etc/cassandra
ip=${CASSANDRA_LISTEN_ADDRESS:-$(hostname -i | cut -d' ' -f1)}
sed -e "s|@CLUSTER_NAME@|${CASSANDRA_CLUSTER_NAME:-Test Cluster}|" \\
    -e "s|@NUM_TOKENS@|${CASSANDRA_NUM_TOKENS:-16}|" \\
    -e "s|@SNITCH@|${CASSANDRA_ENDPOINT_SNITCH:-SimpleSnitch}|" \\
    -e "s|@SEEDS@|${CASSANDRA_SEEDS:-$ip}|" \\
    -e "s|@LISTEN@|$ip|" \\
    "$conf/cassandra.yaml.in" > "$conf/cassandra.yaml"
printf 'dc=%s\\nrack=%s\\n' "${CASSANDRA_DC:-dc1}" "${CASSANDRA_RACK:-rack1}" \\
    > "$conf/cassandra-rackdc.properties"
mkdir -p /var/lib/cassandra/data /var/log/cassandra
exec java -Xms${HEAP_NEWSIZE:-128M} -Xmx${MAX_HEAP_SIZE:-768M} -Xmn${HEAP_NEWSIZE:-128M} \\
    -Xss256k -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:+PerfDisableSharedMem \\
    -XX:+ExitOnOutOfMemoryError -javaagent:@JAMM@ \\
    -Djava.net.preferIPv4Stack=true -Djdk.attach.allowAttachSelf=true \\
    -Dio.netty.tryReflectionSetAccessible=true @MODULE_FLAGS@ \\
    -Dcassandra.config=file://$conf/cassandra.yaml \\
    -Dcassandra-rackdc.properties=file://$conf/cassandra-rackdc.properties \\
    -Dlogback.configurationFile=$conf/logback.xml -Dcassandra-foreground=yes \\
    -Dcassandra.storagedir=/var/lib/cassandra -Dcassandra.logdir=/var/log/cassandra \\
    -cp "/opt/cassandra/lib/*:$conf" org.apache.cassandra.service.CassandraDaemon
"""


def cassandra_context(lib_dir: Path) -> Callable[[Path], None]:
    """Cassandra's Maven jars, a config template and the entrypoint above."""
    from kubescaler_dev.cassandra import JVM_MODULE_FLAGS, LOGBACK, ensure_jars

    def make(ctx: Path) -> None:
        ensure_jars(lib_dir)
        shutil.copytree(lib_dir, ctx / "lib")
        jamm = sorted(p.name for p in lib_dir.glob("jamm-*.jar"))[-1]
        script = CASSANDRA_ENTRYPOINT.replace("@JAMM@", f"/opt/cassandra/lib/{jamm}")
        script = script.replace("@MODULE_FLAGS@", " ".join(JVM_MODULE_FLAGS))
        (ctx / "docker-entrypoint.sh").write_text(script)
        (ctx / "cassandra.yaml.in").write_text(CASSANDRA_YAML)
        (ctx / "logback.xml").write_text(LOGBACK)

    return make


def node_context(ctx: Path) -> None:
    """This machine's Node.js (20.19+, which the web client's Vite needs) and its npm."""
    node = shutil.which("node")
    if node is None:
        raise ClusterError("node not found: the web client's build stage copies this machine's")
    npm_dir = Path(node).resolve().parent.parent / "lib" / "node_modules" / "npm"
    if not npm_dir.is_dir():
        raise ClusterError(f"npm not found beside {node} (looked in {npm_dir})")
    shutil.copy2(Path(node).resolve(), ctx / "node")
    shutil.copytree(npm_dir, ctx / "npm", symlinks=True)
