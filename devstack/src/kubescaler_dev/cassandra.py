"""A real single-node Cassandra 5.0 from its Maven jars, run on Debian's OpenJDK 17.

No package manager ships a Cassandra server; ``cassandra-all`` and its runtime dependencies
are enough to boot ``CassandraDaemon``. ``home`` keeps the generated config, the data and the
logs, so data written before ``stop()`` is there after the next ``start()``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubescaler_dev.cluster.versions import CASSANDRA
from kubescaler_dev.proc import Proc, StartError, port_open

if TYPE_CHECKING:
    from cassandra.cluster import Cluster

CASSANDRA_VERSION = CASSANDRA
CASSANDRA_JAR = f"cassandra-all-{CASSANDRA_VERSION}.jar"
SUPPORTED_JAVA = (17, 11)
INITIAL_HEAP_MIB = 128
DEBIAN_JAVA_17 = Path("/usr/lib/jvm/java-17-openjdk-amd64/bin/java")

_POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kubescaler</groupId><artifactId>cassandra-local</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId><artifactId>cassandra-all</artifactId>
      <version>{CASSANDRA_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""

# Cassandra's conf/jvm17-server.options (module access for JDK 17) plus what its launcher adds.
JVM_MODULE_FLAGS = [
    "--add-exports",
    "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports",
    "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports",
    "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports",
    "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports",
    "java.sql/java.sql=ALL-UNNAMED",
    "--add-exports",
    "java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports",
    "jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens",
    "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens",
    "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.io=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.util=ALL-UNNAMED",
]

LOGBACK = """<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level %date{ISO8601} [%thread] %logger{0} - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
"""


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()[-lines:])


def _mebibytes(size: str) -> int:
    """A JVM size ("768m", "1g", "524288k") in MiB."""
    found = re.fullmatch(r"(\d+)([kKmMgG]?)", size)
    if found is None:
        raise ValueError(f"not a JVM heap size: {size!r}")
    number, unit = int(found.group(1)), found.group(2).lower()
    return {"k": number // 1024, "m": number, "g": number * 1024, "": number // 2**20}[unit]


def ensure_jars(lib_dir: Path) -> None:
    """Fetch cassandra-all and its runtime dependencies into ``lib_dir`` with Maven, once.

    The jars land in a sibling temporary folder that is renamed into place only when Maven
    succeeded, so an interrupted download is never taken for a complete one.
    """
    if (lib_dir / CASSANDRA_JAR).is_file():
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StartError(
            "mvn not found: run `./dev setup` (it installs Debian's maven) to fetch "
            f"Cassandra {CASSANDRA_VERSION}'s jars into {lib_dir}"
        )
    lib_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{lib_dir.name}-", dir=lib_dir.parent))
    try:
        (staging / "pom.xml").write_text(_POM)
        jars = staging / "lib"
        try:
            done = subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-Dstyle.color=never",
                    "-f",
                    str(staging / "pom.xml"),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={jars}",
                ],
                capture_output=True,
                text=True,
                timeout=1800,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StartError(
                f"mvn did not finish fetching Cassandra's jars in {exc.timeout:.0f}s"
            ) from exc
        if done.returncode != 0 or not (jars / CASSANDRA_JAR).is_file():
            raise StartError(
                f"mvn failed ({done.returncode}) fetching Cassandra "
                f"{CASSANDRA_VERSION}'s jars:\n{_tail(done.stdout + done.stderr)}"
            )
        if lib_dir.exists():  # a folder without the marker jar is incomplete: replace it
            shutil.rmtree(lib_dir)
        try:
            jars.rename(lib_dir)
        except OSError:
            if not (lib_dir / CASSANDRA_JAR).is_file():  # not a concurrent fetch that won
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def java_major(java: str) -> int | None:
    """The feature release of ``java`` (17 for 17.0.15), or None if it cannot be run."""
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def find_java() -> str:
    """Debian's OpenJDK 17, else a ``java`` on PATH that is 17 or 11 (Cassandra 5.0's only JDKs)."""
    if DEBIAN_JAVA_17.is_file():
        return str(DEBIAN_JAVA_17)
    other_arch = next(iter(sorted(Path("/usr/lib/jvm").glob("java-17-openjdk-*/bin/java"))), None)
    if other_arch is not None:
        return str(other_arch)
    on_path = shutil.which("java")
    if on_path is not None and java_major(on_path) in SUPPORTED_JAVA:
        return on_path
    seen = f"`{on_path}` is Java {java_major(on_path)}" if on_path else "no java on PATH"
    raise StartError(
        f"Cassandra {CASSANDRA_VERSION} needs Java 17 or 11 and {seen}: "
        "run `./dev setup` (it installs Debian's openjdk-17-jre-headless)"
    )


def _no_memory_lock() -> list[str]:
    """A command prefix that keeps Cassandra from pinning its whole memory when run as root.

    Cassandra always calls ``mlockall``; as root (CAP_IPC_LOCK) that makes every mapped page
    resident. Without the capability it logs "Unable to lock JVM memory (ENOMEM)" and goes on,
    as it does for any ordinary user.
    """
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        return []
    return [setpriv, "--inh-caps", "-ipc_lock", "--bounding-set", "-ipc_lock", "--"]


class CassandraNode(Proc):
    """One Cassandra node on 127.0.0.1 with its config, data and logs under ``home``.

    Only ``native_port`` (CQL) and ``storage_port`` (gossip) are opened; JMX stays off, so
    several nodes on different ports run side by side.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        home: Path,
        native_port: int = 9042,
        storage_port: int = 7000,
        heap: str = "768m",
        lib_dir: Path | None = None,
    ) -> None:
        self.home = home
        self.native_port = native_port
        self.storage_port = storage_port
        self.heap = heap
        self.lib_dir = lib_dir if lib_dir is not None else home / "lib"
        super().__init__(f"cassandra:{native_port}", [], home / "logs" / "cassandra.log")

    @property
    def config_file(self) -> Path:
        return self.home / "cassandra.yaml"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def config_yaml(self) -> str:
        data = self.data_dir.resolve()
        return f"""# Written by kubescaler_dev.cassandra on every start: edits are lost.
cluster_name: kubescaler-local
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{self.host}:{self.storage_port}"
listen_address: {self.host}
rpc_address: {self.host}
storage_port: {self.storage_port}
start_native_transport: true
native_transport_port: {self.native_port}
data_file_directories: ["{data / "data"}"]
commitlog_directory: "{data / "commitlog"}"
saved_caches_directory: "{data / "saved_caches"}"
hints_directory: "{data / "hints"}"
cdc_raw_directory: "{data / "cdc_raw"}"
commitlog_sync: periodic
commitlog_sync_period: 1000ms
commitlog_segment_size: 8MiB
auto_snapshot: false
hinted_handoff_enabled: false
concurrent_reads: 4
concurrent_writes: 4
concurrent_counter_writes: 2
concurrent_materialized_view_writes: 2
concurrent_compactors: 1
memtable_flush_writers: 1
file_cache_size: 64MiB
"""

    def jvm_argv(self, java: str) -> list[str]:
        lib = self.lib_dir.resolve()
        home = self.home.resolve()
        jamm = sorted(lib.glob("jamm-*.jar"))
        if not jamm:
            raise StartError(f"no jamm-*.jar in {lib}: delete the folder to fetch the jars again")
        # A small initial heap that grows on demand keeps the resident size near what is used.
        initial = min(_mebibytes(self.heap), INITIAL_HEAP_MIB)
        return [
            *_no_memory_lock(),
            java,
            f"-Xms{initial}m",
            f"-Xmx{self.heap}",
            "-Xss256k",
            "-XX:+UseG1GC",
            "-XX:+ParallelRefProcEnabled",
            "-XX:MaxTenuringThreshold=1",
            "-XX:+PerfDisableSharedMem",
            "-XX:+ExitOnOutOfMemoryError",
            f"-javaagent:{jamm[-1]}",
            "-Djava.net.preferIPv4Stack=true",
            "-Djdk.attach.allowAttachSelf=true",
            "-Dio.netty.tryReflectionSetAccessible=true",
            "-Dio.netty.allocator.useCacheForAllThreads=true",
            "-Dio.netty.allocator.maxOrder=11",
            *JVM_MODULE_FLAGS,
            f"-Dcassandra.config={(home / 'cassandra.yaml').as_uri()}",
            f"-Dlogback.configurationFile={home / 'logback.xml'}",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.storagedir={home / 'data'}",
            f"-Dcassandra.logdir={home / 'logs'}",
            f"-Dcassandra.triggers_dir={home / 'triggers'}",
            # One local node: nothing to gossip with, so do not wait for the ring to settle.
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.ring_delay_ms=0",
            "-cp",
            f"{lib}/*",
            "org.apache.cassandra.service.CassandraDaemon",
        ]

    def write_config(self) -> None:
        for sub in ("data", "logs", "triggers"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config_yaml())
        (self.home / "logback.xml").write_text(LOGBACK)

    def start(self) -> None:
        ensure_jars(self.lib_dir)
        java = find_java()
        self.write_config()
        self.argv = self.jvm_argv(java)
        self.env = {"CASSANDRA_HOME": str(self.home.resolve()), "MALLOC_ARENA_MAX": "4"}
        self.cwd = self.home
        super().start()

    def cluster(self, **kwargs: Any) -> Cluster:
        """A driver Cluster for this node (the caller connects and shuts it down)."""
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import RoundRobinPolicy

        profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=10)
        return Cluster(
            [self.host],
            port=self.native_port,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            **{"protocol_version": 5, **kwargs},  # Cassandra 5.0's; no downgrade warnings
        )

    def ready(self) -> bool:
        """True when CQL on ``native_port`` answers ``SELECT release_version FROM system.local``."""
        if not port_open(self.native_port):
            return False
        cluster = self.cluster(connect_timeout=2, control_connection_timeout=2)
        try:
            row = (
                cluster.connect()
                .execute("SELECT release_version FROM system.local", timeout=5)
                .one()
            )
            return row is not None
        finally:
            with contextlib.suppress(Exception):
                cluster.shutdown()

    def start_ready(self, timeout: float = 180.0) -> None:
        self.start()
        self.wait_until(self.ready, timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM: Cassandra's shutdown hook drains (flushes memtables) before it exits."""
        super().stop(timeout)


__all__ = ["CASSANDRA_VERSION", "CassandraNode", "ensure_jars", "find_java", "java_major"]
