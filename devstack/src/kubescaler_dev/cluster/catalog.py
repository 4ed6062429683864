"""Every image the local cluster runs, and how each is made (no registry is reachable here).

- a static C ``pause`` for the pod sandboxes;
- single-binary ``FROM scratch`` images for what is built from Go modules (CoreDNS,
  metrics-server, KEDA, Traefik, Prometheus, the classic overlay's metrics adapter);
- stand-ins made from Debian packages for the images the manifests run beside ours (Redis,
  Cassandra from its Maven jars on Debian's JRE) and for the Containerfile's two base images;
- kubescaler's own image, from the project's Containerfile, unchanged.

References come from the version table (versions.IMAGES); images.py builds and loads them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from kubescaler_dev.cluster.images import ROOT, ROOTFS, Image
from kubescaler_dev.cluster.layout import Layout
from kubescaler_dev.cluster.progress import ClusterError, run
from kubescaler_dev.cluster.versions import IMAGES

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


def catalog(lay: Layout) -> list[Image]:
    """Every image but kubescaler's own, in build order."""
    minbase, python = ROOTFS["minbase"].ref, ROOTFS["python"].ref
    return [
        Image(
            IMAGES["pause"],
            'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n',
            pause_context,
        ),
        binary_image(IMAGES["coredns"], "coredns", "coredns", lay),
        binary_image(IMAGES["metrics-server"], "metrics-server", "metrics-server", lay),
        binary_image(IMAGES["keda"], "keda", "keda", lay),
        binary_image(IMAGES["keda-adapter"], "keda", "keda-adapter", lay),
        binary_image(IMAGES["traefik"], "traefik", "traefik", lay),
        binary_image(IMAGES["metrics-adapter"], "metrics-adapter", "metrics-adapter", lay),
        Image(
            IMAGES["redis"],
            f'FROM {ROOTFS["redis"].ref}\nUSER 999:999\nCMD ["redis-server"]\n',
            rootfs=("redis",),
        ),
        # the official image's user (nobody) and path (its data goes in /prometheus)
        binary_image(
            IMAGES["prometheus"], "prometheus", "prometheus", lay, user=65534, where="/bin"
        ),
        Image(
            IMAGES["cassandra"],
            f"FROM {ROOTFS['cassandra'].ref}\n"
            "RUN groupadd -g 999 cassandra && useradd -u 999 -g 999 -M -d /var/lib/cassandra"
            " cassandra && mkdir -p /var/lib/cassandra /var/log/cassandra /etc/cassandra"
            " && chown 999:999 /var/lib/cassandra /var/log/cassandra\n"
            "COPY lib /opt/cassandra/lib\n"
            "COPY cassandra.yaml.in logback.xml /etc/cassandra/\n"
            "COPY --chmod=755 docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh\n"
            "USER 999:999\n"
            'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]\n',
            cassandra_context(lay.cache / "cassandra-lib"),
            rootfs=("cassandra",),
        ),
        Image(
            IMAGES["node"],
            f"FROM {minbase}\nCOPY node /usr/local/bin/node\n"
            "COPY npm /usr/local/lib/node_modules/npm\n"
            "RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm\n"
            "ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt\n",
            node_context,
            rootfs=("minbase",),
            load=False,
        ),
        Image(
            IMAGES["python"],
            f"FROM {python}\nENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n",
            rootfs=("python",),
            load=False,
        ),
    ]


def app_image() -> Image:
    """kubescaler's image from the Containerfile, its base images the local stand-ins."""
    return Image(
        IMAGES["kubescaler"],
        "",
        file=ROOT / "Containerfile",
        build_args={"NODE_IMAGE": IMAGES["node"], "PYTHON_IMAGE": IMAGES["python"]},
    )


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
# HEAP_NEWSIZE) written into /etc/cassandra, then the daemon in the foreground with
# JVM_EXTRA_OPTS added to its JVM options, as the official image's cassandra-env.sh adds them.
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
    ${JVM_EXTRA_OPTS:-} \\
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
