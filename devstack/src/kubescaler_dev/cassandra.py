"""A real single-node Cassandra 5.0 from its Maven jars, run on Debian's OpenJDK 17.

No package manager ships a Cassandra server; ``cassandra-all`` and its runtime dependencies
are enough to boot ``CassandraDaemon``. ``home`` keeps the generated config, the data and the
logs, so data written before ``stop()`` is there after the next ``start()``.

The node runs authenticated (``PasswordAuthenticator``, ``CassandraAuthorizer``) unless told
otherwise; :func:`provision` makes its roles (``kubescaler.adapters.cassandra_roles``) with
passwords kept in files under ``home`` and returns the settings base logs in with.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubescaler_dev.cassandra_jars import (
    CASSANDRA_VERSION,
    ensure_jars,
    find_java,
    java_major,
)
from kubescaler_dev.proc import Proc, StartError, port_open

if TYPE_CHECKING:
    from cassandra.cluster import Cluster

    from kubescaler.settings_cassandra import CassandraSettings

INITIAL_HEAP_MIB = 128
#: How long after its start a node with an empty system_auth makes the default superuser
#: (Cassandra's default is 10 s, to let a ring settle; one local node has nothing to wait for).
SUPERUSER_SETUP_DELAY_MS = 0
#: The local roles: the admin superuser `provision` makes, and base's.
ADMIN_ROLE = "kubescaler_admin"
BASE_ROLE = "base"

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


AUTH_YAML = """authenticator: PasswordAuthenticator
authorizer: CassandraAuthorizer
role_manager: CassandraRoleManager
"""


def _mebibytes(size: str) -> int:
    """A JVM size ("768m", "1g", "524288k") in MiB."""
    found = re.fullmatch(r"(\d+)([kKmMgG]?)", size)
    if found is None:
        raise ValueError(f"not a JVM heap size: {size!r}")
    number, unit = int(found.group(1)), found.group(2).lower()
    return {"k": number // 1024, "m": number, "g": number * 1024, "": number // 2**20}[unit]


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
        auth: bool = True,
    ) -> None:
        self.home = home
        self.auth = auth
        #: who ``cluster()`` logs in as (``provision`` sets the admin); None: nobody
        self.login: tuple[str, str] | None = None
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
""" + (AUTH_YAML if self.auth else "")

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
            *([f"-Dcassandra.superuser_setup_delay_ms={SUPERUSER_SETUP_DELAY_MS}"] * self.auth),
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
        if self.login is not None:
            from cassandra.auth import PlainTextAuthProvider

            kwargs.setdefault("auth_provider", PlainTextAuthProvider(*self.login))
        return Cluster(
            [self.host],
            port=self.native_port,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            **{"protocol_version": 5, **kwargs},  # Cassandra 5.0's; no downgrade warnings
        )

    def ready(self) -> bool:
        """True when CQL on ``native_port`` answers ``SELECT release_version FROM system.local``
        (or, authenticated and not yet logged in, refuses the login: CQL answers)."""
        from cassandra import AuthenticationFailed
        from cassandra.cluster import NoHostAvailable

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
        except NoHostAvailable as exc:
            refused = any(isinstance(e, AuthenticationFailed) for e in exc.errors.values())
            if self.auth and self.login is None and refused:
                return True
            raise
        finally:
            with contextlib.suppress(Exception):
                cluster.shutdown()

    def start_ready(self, timeout: float = 180.0) -> None:
        self.start()
        self.wait_until(self.ready, timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM: Cassandra's shutdown hook drains (flushes memtables) before it exits."""
        super().stop(timeout)


def _password(path: Path) -> str:
    """The password kept in ``path``, made (random, mode 0600) on the first use."""
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    password = secrets.token_urlsafe(24)
    path.write_text(password + "\n")
    return password


def provision(
    node: CassandraNode, keyspace: str, timeout: float = 120.0, replication_factor: int = 1
) -> CassandraSettings:
    """Make the node's roles, grants and schema; the settings base logs in with.

    The passwords are made on the first call and kept in ``<home>/<role>.password``, so a
    restart, or a fresh data folder, uses the same ones. The node's ``cluster()`` logs in as
    the admin afterwards.
    """
    import msgspec

    from kubescaler.adapters.cassandra_roles import ensure_until
    from kubescaler.settings_cassandra import CassandraSettings

    settings = CassandraSettings(
        hosts=[node.host],
        port=node.native_port,
        keyspace=keyspace,
        replication_factor=replication_factor,
        username=BASE_ROLE,
        password=_password(node.home / f"{BASE_ROLE}.password"),
        admin_username=ADMIN_ROLE,
        admin_password=_password(node.home / f"{ADMIN_ROLE}.password"),
    )
    try:
        ensure_until(settings, timeout)
    except Exception as exc:
        raise StartError(f"{node.name}: could not make its roles: {exc}") from exc
    node.login = (settings.admin_username, settings.admin_password)
    return msgspec.structs.replace(settings, admin_username="", admin_password="")


__all__ = [
    "CASSANDRA_VERSION",
    "CassandraNode",
    "ensure_jars",
    "find_java",
    "java_major",
    "provision",
]
