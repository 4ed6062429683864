"""`./dev up`: the whole system on 127.0.0.1, started in dependency order, kept running.

Redis and Cassandra keep their data under ``.local/`` (git-ignored), so it survives a restart.
The state Redis runs as production runs it (``devstack/sentinel.py``: a primary, two replicas,
three Sentinels; kubescaler's processes find the primary through the Sentinels, and Redlock gets
a master of its own), unless ``--plain-redis`` asks for the one Redis of KUBESCALER_REDIS_URL.
Every process is awaited on its readiness before the next one that needs it starts, as the
Kubernetes manifests do with probes. Once all are up, a process that exits is started again on
its port with a back-off (``devstack/supervisor.py``), as Kubernetes restarts a container; a
process that does not come up at the first start stops ``up`` (a broken setup, nothing to keep
running yet). Ctrl-C (or SIGTERM) stops them all in reverse order.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from kubescaler.adapters.tokens import LOCAL_KEY, read_or_make_secret
from kubescaler.settings import Settings
from kubescaler_dev import logins
from kubescaler_dev.cassandra import ADMIN_ROLE, CassandraNode, provision
from kubescaler_dev.nginx import Nginx
from kubescaler_dev.proc import Proc, StartError, free_port, port_open
from kubescaler_dev.redis import RedisServer
from kubescaler_dev.sentinel import RedisSentinel, StateRedis
from kubescaler_dev.services import Service
from kubescaler_dev.supervisor import Backoff, Supervised, Supervisor

#: The local Redlock masters' ports (the state Redis is 6379), as production runs three.
LOCAL_MASTER_PORTS = (6380, 6381, 6382)
#: The state Redis's replicas (on free ports: nothing names them but the primary and the
#: Sentinels) and the Sentinels' ports when KUBESCALER_REDIS_SENTINELS does not name them.
REPLICAS = 2
SENTINEL_PORTS = [26379, 26380, 26381]


def _port(url: str, default: int) -> int:
    return urlsplit(url).port or default


class Stack:
    """Every process of the local system, in start order."""

    def __init__(
        self,
        settings: Settings,
        state: Path,
        streams: int = 2,
        keepers: int = 1,
        sentinel: bool = True,
    ) -> None:
        self.settings = settings
        self.state = state
        logs = state / "logs"
        s = settings
        primary = _port(s.redis.url, 6379)
        #: the state Redis as production runs it (a primary, replicas, Sentinels), or None
        self.state_redis: StateRedis | None = None
        # three Redlock masters of their own, as in production (a replicated one would hand its
        # locks to a replica), unless KUBESCALER_REDIS_LOCK_URLS names others
        lock_urls = s.redis.lock_urls or [f"redis://127.0.0.1:{p}/0" for p in LOCAL_MASTER_PORTS]
        lock_ports = sorted({_port(u, 6379) for u in lock_urls} - {primary})
        redis_env = {"KUBESCALER_REDIS_LOCK_URLS": ",".join(lock_urls)}
        #: every Redis user's password, made on the first start and kept (logins.py)
        self.passwords = logins.kept(state / "redis-passwords")
        pw = self.passwords
        if sentinel:
            self.state_redis = StateRedis(
                state,
                pw,
                primary,
                [free_port() for _ in range(REPLICAS)],
                [p for _, p in s.redis.sentinel_addresses] or SENTINEL_PORTS,
            )
            redis_env |= self.state_redis.env()
        self.redis = (
            [] if sentinel else [RedisServer(primary, state / f"redis-{primary}", pw)]
        ) + [
            RedisServer(port, state / f"redis-{port}", pw, fsync_always=True, kind="master")
            for port in lock_ports
        ]
        self.cassandra = CassandraNode(
            state / "cassandra",
            native_port=s.cassandra.port,
            storage_port=s.cassandra.storage_port,
            lib_dir=state / "cassandra" / "lib",
        )
        base_url = f"http://127.0.0.1:{s.base_port}"
        env = {"KUBESCALER_BASE_URL": base_url, **redis_env}
        self.base = Service("base", s.base_port, env, logs, args=("--port", str(s.base_port)))
        self.main = Service(
            "main", s.main_port, env, logs, args=("--port", str(s.main_port)), passwords=pw
        )
        keeper_port = s.lock.keeper_port
        self.keepers = [
            Service(
                "lock-keeper",
                keeper_port + i,
                {"KUBESCALER_INSTANCE": f"lock-keeper-{i}", **redis_env},
                logs,
                name=f"lock-keeper-{i}",
                args=("--port", str(keeper_port + i)),
                passwords=pw,
            )
            for i in range(keepers)
        ]
        self.streams = [
            Service(
                "stream",
                s.stream_port + i,
                # behind the one nginx: the client address is X-Forwarded-For's last entry
                {**env, "KUBESCALER_INSTANCE": f"stream-{i}", "KUBESCALER_LIMITS_PROXY_HOPS": "1"},
                logs,
                name=f"stream-{i}",
                args=("--port", str(s.stream_port + i)),
                passwords=pw,
            )
            for i in range(streams)
        ]
        self.gateway = Nginx(
            state / "nginx",
            s.gateway_port,
            f"127.0.0.1:{s.main_port}",
            [f"127.0.0.1:{svc.port}" for svc in self.streams],
        )
        self.started: list[Proc] = []
        self.readiness: dict[str, tuple[Callable[[], bool], float]] = {}

    def _start(self, proc: Proc, ready: Callable[[], bool], timeout: float = 120) -> None:
        proc.start()
        print(f"  starting {proc.name} (pid {proc.pid}) ...", flush=True)
        self.started.append(proc)
        self.readiness[proc.name] = (ready, timeout)
        proc.wait_until(ready, timeout=timeout)

    @property
    def auth_key(self) -> Path:
        return self.state / LOCAL_KEY

    def _auth_key(self) -> None:
        """main and the streams verify tokens with the local key (made on the first start and
        kept, so `kubescaler token` signs with it); KUBESCALER_AUTH_SECRET, when set, wins."""
        secret = self.settings.auth.secret or read_or_make_secret(self.auth_key)
        for svc in (self.main, *self.streams):
            svc.env = {**(svc.env or {}), "KUBESCALER_AUTH_SECRET": secret}

    def _cassandra_roles(self) -> None:
        """The node is authenticated: make its roles (passwords made on the first start, kept
        in its folder) and give base its own, which may only read and write the tables."""
        c = self.settings.cassandra
        roles = provision(self.cassandra, c.keyspace, replication_factor=c.replication_factor)
        self.base.env = {
            **(self.base.env or {}),
            "KUBESCALER_CASSANDRA_USERNAME": roles.username,
            "KUBESCALER_CASSANDRA_PASSWORD": roles.password,
        }

    def start(self, backing_only: bool = False) -> None:
        """Start everything (or only Redis and Cassandra), or stop what started and raise."""
        backing = self.backing
        ports = [p.port for p in backing if isinstance(p, (RedisServer, RedisSentinel))]
        ports.append(self.cassandra.native_port)
        if not backing_only:
            ports += [self.settings.gateway_port, self.base.port, self.main.port]
            ports += [p.port for p in self.keepers + self.streams]
        for port in ports:
            if port_open(port):
                raise StartError(f"port {port} is in use: is the local system already up?")
        try:
            for proc in backing:
                self._start(proc, proc.ready if isinstance(proc, RedisSentinel) else proc.ping)
            self._start(self.cassandra, self.cassandra.ready, timeout=240)
            self._cassandra_roles()
            if backing_only:
                return
            self._auth_key()
            self._start(self.base, self.base.ready)
            self._start(self.main, self.main.ready)
            for keeper in self.keepers:
                self._start(keeper, keeper.ready)
            for svc in self.streams:
                self._start(svc, svc.ready)
            self._start(self.gateway, self.gateway.ready)
        except BaseException:
            self.stop()
            raise

    @property
    def backing(self) -> list[RedisServer | RedisSentinel]:
        """The Redis processes, in start order: the state Redis's, then Redlock's."""
        return [*(self.state_redis.procs if self.state_redis else []), *self.redis]

    def supervisor(self, backoff: Backoff | None = None) -> Supervisor:
        """Restarts for every started process, each line printed with a ``kubescaler:`` prefix."""
        now = time.monotonic()

        def say(line: str) -> None:
            print(f"kubescaler: {line}", flush=True)

        return Supervisor(
            [
                Supervised(
                    proc,
                    *self.readiness[proc.name],
                    proc.started_at or now,  # its run so far counts toward a stable one
                    backoff or Backoff(),
                    say,
                )
                for proc in self.started
            ]
        )

    def stop(self) -> None:
        while self.started:
            proc = self.started.pop()
            print(f"  stopping {proc.name}", flush=True)
            proc.stop(timeout=60)

    def urls(self) -> dict[str, str]:
        backing = {"redis": " ".join(r.url for r in self.redis)}
        if self.state_redis:
            topology = self.state_redis
            backing = {
                "state redis": f"{topology.primary.url} (primary at the start; "
                f"replicas {' '.join(str(r.port) for r in topology.replicas)})",
                "sentinels": topology.env()["KUBESCALER_REDIS_SENTINELS"]
                + f" (master name {topology.master})",
                "redlock masters": " ".join(r.url for r in self.redis),
            }
        folder = self.state / "redis-passwords"
        backing["redis users"] = (
            f"one password per user in {folder}/<user>; e.g. "
            f"REDISCLI_AUTH=$(cat {folder}/{logins.ADMIN}) redis-cli --user {logins.ADMIN}"
        )

        home = self.cassandra.home
        backing["cassandra"] = (
            f"127.0.0.1:{self.cassandra.native_port} (roles base and {ADMIN_ROLE}, passwords "
            f"in {home}/base.password and {home}/{ADMIN_ROLE}.password)"
        )
        if self.gateway not in self.started:
            return {**backing, "logs": str(self.state / "logs")}
        g = f"http://127.0.0.1:{self.settings.gateway_port}"
        auth = self.settings.auth
        mint = "uv run kubescaler token USER_ID [--admin] [--ttl 1h]"
        admin = ""
        if auth.enabled:
            state = f"on: tokens from `{mint}` (key {self.auth_key}), or the dashboard's sign-in"
            nil = "00000000-0000-0000-0000-000000000000"
            admin = f'-H "Authorization: Bearer $(uv run kubescaler token {nil} --admin)" '
        else:
            state = (
                f"off (KUBESCALER_AUTH_ENABLED=true turns it on); `{mint}` signs with "
                f"{self.auth_key}"
            )
        return {
            "entry point": g,
            "users": f"{g}/main/users",
            "profiles": f"{g}/main/profiles",
            "suggested": f"{g}/main/suggested",
            "live profiles": f"{g}/main/login/{{user_id}}",
            "dashboard": f"{g}/dashboard",
            "web client": f"{g}/index/{{user_id}}/{{profile_id}}",
            "create test data": f"curl -X POST {admin}'{g}/main/testdata?users=100&profiles=20'",
            "auth": state,
            "base": self.base.url,
            "main": self.main.url,
            "streams": " ".join(svc.url for svc in self.streams),
            "lock-keepers": " ".join(k.url for k in self.keepers),
            **backing,
            "logs": str(self.state / "logs"),
        }


def run(
    settings: Settings,
    streams: int,
    keepers: int = 1,
    backing_only: bool = False,
    sentinel: bool = True,
) -> int:
    """Bring the system up, print its URLs, and keep it up until Ctrl-C or SIGTERM."""
    state = Path(settings.local_state_dir).resolve()
    stack = Stack(settings, state, streams, keepers, sentinel)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"kubescaler: bringing the local system up (state in {state})", flush=True)
    try:
        stack.start(backing_only)
    except StartError as exc:
        print(f"kubescaler: could not start: {exc}", flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    width = max(map(len, stack.urls()))
    print("\nkubescaler is up:")
    for name, url in stack.urls().items():
        print(f"  {name:<{width}}  {url}")
    print("\nCtrl-C stops it. A process that exits is started again.", flush=True)
    supervisor = stack.supervisor()
    try:
        while not stop.wait(0.25):
            supervisor.tick(time.monotonic())
    except KeyboardInterrupt:
        pass
    print("\nkubescaler: stopping (each process gets up to a minute) ...", flush=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan children
    stack.stop()
    print("kubescaler: stopped.", flush=True)
    return 0
