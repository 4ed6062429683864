"""The state Redis as production runs it: a primary, replicas and three Redis Sentinels that
promote a replica when the primary is gone (Debian's redis-server and redis-sentinel).

:class:`StateRedis` composes them in start order; kubescaler's processes find the primary
through the Sentinels (:meth:`StateRedis.env`). A Sentinel's configuration is written at its
first start and from then on is the Sentinel's own (it records failovers in it), so one that
the supervisor restarts knows what happened meanwhile; a new StateRedis starts afresh, with
``primary_port`` as the primary.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

from kubescaler_dev import logins
from kubescaler_dev.proc import Proc, StartError
from kubescaler_dev.redis import ONCE, RedisServer, _private

#: The variable :mod:`.redis_follow` reads the Sentinels' password from (not its argv).
PASSWORD_ENV = "KUBESCALER_DEV_SENTINEL_PASSWORD"

#: The name the Sentinels monitor the state Redis under (KUBESCALER_REDIS_SENTINEL_MASTER).
MASTER = "kubescaler"
#: How long the primary may be silent before a Sentinel holds it down; production says 5 s.
DOWN_AFTER_MS = 1000


def sentinel_binary() -> str:
    found = shutil.which("redis-sentinel")
    if found is None:
        raise StartError(
            "redis-sentinel not found: run `./dev setup` (it installs Debian's redis-sentinel)"
        )
    return found


def _myid(port: int) -> str:
    """A Sentinel's id (40 hex digits) from its port, so its peers can be written down before
    they have met: they then agree on a failover without first waiting for each other's hello
    messages (every 2 s)."""
    return hashlib.sha1(f"kubescaler-sentinel-{port}".encode()).hexdigest()


class RedisSentinel(Proc):
    """One redis-sentinel on 127.0.0.1:port watching ``primary`` (with ``replicas`` and
    ``peers`` known from the start); quorum 2. Clients and its peers log in with the
    Sentinels' password (``requirepass``, ``sentinel sentinel-pass``); it logs in to the
    servers as their ``sentinel`` user."""

    def __init__(
        self,
        port: int,
        data_dir: Path,
        passwords: Mapping[str, str],
        primary: int,
        replicas: Sequence[int],
        peers: Sequence[int],
        master: str = MASTER,
        down_after_ms: int = DOWN_AFTER_MS,
    ) -> None:
        self.port = port
        self.data_dir = data_dir
        self.master = master
        self.password = passwords[logins.SENTINELS]
        self.conf = data_dir / "sentinel.conf"
        self.lines = [
            f"port {port}",
            f"requirepass {self.password}",
            f"sentinel sentinel-pass {self.password}",
            "bind 127.0.0.1",
            f"dir {data_dir}",
            f"sentinel myid {_myid(port)}",
            f"sentinel monitor {master} 127.0.0.1 {primary} 2",
            f"sentinel down-after-milliseconds {master} {down_after_ms}",
            f"sentinel failover-timeout {master} 10000",
            f"sentinel parallel-syncs {master} 1",
            f"sentinel auth-user {master} sentinel",
            f"sentinel auth-pass {master} {passwords['sentinel']}",
            *(f"sentinel known-replica {master} 127.0.0.1 {r}" for r in replicas),
            *(f"sentinel known-sentinel {master} 127.0.0.1 {p} {_myid(p)}" for p in peers),
        ]
        self.peers = len(peers)
        self.replicas = len(replicas)
        self.configured = False
        super().__init__(f"sentinel:{port}", [sentinel_binary(), str(self.conf)], data_dir / "log")

    def start(self) -> None:
        if not self.configured:  # afterwards the file is the Sentinel's own
            self.data_dir.mkdir(parents=True, exist_ok=True)
            _private(self.conf, "\n".join(self.lines) + "\n")
            self.configured = True
        super().start()

    def state(self) -> dict[str, str]:
        """``SENTINEL MASTER``: what this Sentinel knows of the primary (flags, ip, port, ...)."""
        client = redis.Redis(
            port=self.port,
            password=self.password,
            socket_timeout=0.5,
            decode_responses=True,
            retry=ONCE,
        )
        try:
            state: Any = client.sentinel_master(self.master)
            return {k: str(v) for k, v in state.items()}
        finally:
            client.close()

    def ready(self) -> bool:
        """It answers, sees the primary up, its replicas and its peers."""
        state = self.state()
        return (
            state["flags"] == "master"
            and int(state["num-slaves"]) >= self.replicas
            and int(state["num-other-sentinels"]) >= self.peers
        )

    def primary(self) -> int:
        """The port of the primary this Sentinel names now."""
        return int(self.state()["port"])


def follow_argv(
    port: int, sentinels: Sequence[int], master: str, follow: int | None, server: list[str]
) -> list[str]:
    """``server`` (redis-server's argv) started as the Sentinels say (:mod:`.redis_follow`):
    a replica of the primary they name, ``follow`` when none answers (the first start), never
    a primary again while they fail this one over. Every server takes writes only while a
    replica follows it: one cut off from the others refuses them instead of keeping writes a
    failover would drop (``min_replicas``, docs/locks.md)."""
    return [
        sys.executable,
        "-m",
        "kubescaler_dev.redis_follow",
        "--port",
        str(port),
        "--sentinels",
        ",".join(map(str, sentinels)),
        "--master",
        master,
        *(["--follow", str(follow)] if follow is not None else []),
        "--",
        *server,
    ]


class StateRedis:
    """A primary on ``primary_port``, a replica on each of ``replica_ports`` and a Sentinel on
    each of ``sentinel_ports`` (three: a quorum of two survives one lost), their data in
    ``data_dir``'s ``redis-<primary port>``, ``redis-replica-<i>``, ``redis-sentinel-<i>``."""

    def __init__(
        self,
        data_dir: Path,
        passwords: Mapping[str, str],
        primary_port: int,
        replica_ports: Sequence[int],
        sentinel_ports: Sequence[int],
        persist: bool = True,
        master: str = MASTER,
        down_after_ms: int = DOWN_AFTER_MS,
    ) -> None:
        self.master = master
        self.passwords = dict(passwords)

        def server(port: int, data: str, follow: int | None) -> RedisServer:
            found = RedisServer(port, data_dir / data, passwords, persist, min_replicas=1)
            found.argv = follow_argv(port, sentinel_ports, master, follow, found.argv)
            found.env = {PASSWORD_ENV: passwords[logins.SENTINELS]}
            found.name = f"redis:{port}" if follow is None else f"redis-replica:{port}"
            return found

        self.primary = server(primary_port, f"redis-{primary_port}", None)
        self.replicas = [
            server(port, f"redis-replica-{i}", primary_port) for i, port in enumerate(replica_ports)
        ]
        self.sentinels = [
            RedisSentinel(
                port,
                data_dir / f"redis-sentinel-{i}",
                passwords,
                primary_port,
                replica_ports,
                [p for p in sentinel_ports if p != port],
                master,
                down_after_ms,
            )
            for i, port in enumerate(sentinel_ports)
        ]

    @property
    def servers(self) -> list[RedisServer]:
        return [self.primary, *self.replicas]

    @property
    def procs(self) -> list[RedisServer | RedisSentinel]:
        """Every process, in start order."""
        return [*self.servers, *self.sentinels]

    def env(self) -> dict[str, str]:
        """What kubescaler's processes need to find the primary (their login aside)."""
        return {
            "KUBESCALER_REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels),
            "KUBESCALER_REDIS_SENTINEL_MASTER": self.master,
            "KUBESCALER_REDIS_SENTINEL_PASSWORD": self.passwords[logins.SENTINELS],
        }

    def login(self, user: str = logins.ADMIN) -> dict[str, str]:
        """``username``/``password`` of ``user`` on the servers, and the Sentinels' password
        (RedisSettings keywords)."""
        return {
            **logins.login(self.passwords, user),
            "sentinel_password": self.passwords[logins.SENTINELS],
        }

    def start_ready(self, timeout: float = 30.0) -> None:
        """Start every process and wait until each Sentinel could lead a failover."""
        try:
            for server in self.servers:
                server.start_ready(timeout)
            for sentinel in self.sentinels:
                sentinel.start()
            for sentinel in self.sentinels:
                sentinel.wait_until(sentinel.ready, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def server(self, port: int) -> RedisServer:
        (found,) = [s for s in self.servers if s.port == port]
        return found

    def current(self) -> RedisServer:
        """The server the first Sentinel that answers names as the primary."""
        for sentinel in self.sentinels:
            try:
                return self.server(sentinel.primary())
            except redis.RedisError:
                continue
        raise StartError("no Sentinel answers")

    def promoted(self, old: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Wait until a majority of the Sentinels name another primary than ``old`` and that
        one says it is a primary; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            named = []
            for sentinel in self.sentinels:
                try:
                    named.append(sentinel.primary())
                except redis.RedisError:
                    continue
            for port in set(named) - {old.port}:
                if named.count(port) * 2 > len(self.sentinels):
                    new = self.server(port)
                    if new.role() == "master":
                        return new
            time.sleep(0.05)
        raise StartError(f"no replica promoted within {timeout:.0f}s after {old.name}")
