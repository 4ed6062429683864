"""Debian's redis-server as a local process, its data kept in a folder of the checkout."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kubescaler_dev import logins
from kubescaler_dev.proc import Proc, StartError

#: One try: a readiness check answers now, not after redis-py's default retries (seconds)
ONCE = Retry(NoBackoff(), 0)


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise StartError(
            "redis-server not found: run `./dev setup` (it installs Debian's redis-server)"
        )
    return found


class RedisServer(Proc):
    """One redis-server on 127.0.0.1:port with AOF persistence under ``data_dir``: independent,
    or a replica of the one on ``replica_of`` (a port). With ``min_replicas`` it takes writes
    only while that many replicas follow it, each acknowledged within 5 s. ``fsync_always``:
    every write on disk before it is answered, as a Redlock master needs (one that loses its
    last second's writes in a crash forgets fencing counters it agreed to).

    Authenticated as in production: the ACL users of ``kind`` (``state`` or ``master``,
    :mod:`kubescaler.redis_acl`) with ``passwords``, plus the local ``admin``; ``default`` is
    off. A replica logs in to its primary as ``replica``. The users file and the replication
    login are written to ``data_dir`` (mode 0600) at each start, never onto the command line."""

    def __init__(
        self,
        port: int,
        data_dir: Path,
        passwords: Mapping[str, str],
        persist: bool = True,
        replica_of: int | None = None,
        min_replicas: int = 0,
        fsync_always: bool = False,
        kind: str = "state",
    ) -> None:
        self.port = port
        self.data_dir = data_dir
        self.replica_of = replica_of
        self.passwords = dict(passwords)
        self.kind = kind
        self.conf = data_dir / "auth.conf"
        argv = [
            redis_binary(),
            str(self.conf),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--save",
            "60 1" if persist else "",
            "--appendonly",
            "yes" if persist else "no",
            "--appendfsync",
            "always" if fsync_always else "everysec",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            # a replica's first sync starts at once, not after the 5 s Redis 7 waits by default
            # for more replicas to share a diskless transfer
            "--repl-diskless-sync-delay",
            "0",
            *(["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else []),
            *(
                ["--min-replicas-to-write", str(min_replicas), "--min-replicas-max-lag", "5"]
                if min_replicas
                else []
            ),
        ]
        name = f"redis:{port}" if replica_of is None else f"redis-replica:{port}"
        super().__init__(name, argv, data_dir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def login(self, user: str = logins.ADMIN) -> dict[str, str]:
        """``username``/``password`` of ``user`` here (redis-py or RedisSettings keywords)."""
        return logins.login(self.passwords, user)

    def client(self, user: str = logins.ADMIN, **options: object) -> redis.Redis:
        """A (sync) client logged in as ``user``."""
        return redis.Redis(port=self.port, **self.login(user), **options)  # type: ignore[arg-type]

    def ping(self) -> bool:
        client = self.client(socket_timeout=0.5, retry=ONCE)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def role(self) -> str:
        """``master`` or ``slave`` (as INFO says), or ``down``."""
        client = self.client(socket_timeout=0.5, retry=ONCE)
        try:
            return str(client.info("replication")["role"])
        except redis.RedisError:
            return "down"
        finally:
            client.close()

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        users = self.data_dir / "users.acl"
        _private(users, logins.acl_file(self.kind, self.passwords))
        lines = [f"aclfile {users}"]
        if self.kind == "state":  # a replica's login to its primary (unused by a primary)
            lines += ["masteruser replica", f"masterauth {self.passwords['replica']}"]
        _private(self.conf, "\n".join(lines) + "\n")
        super().start()

    def start_ready(self, timeout: float = 15.0) -> None:
        self.start()
        self.wait_until(self.ping, timeout)


def _private(path: Path, text: str) -> None:
    """``text`` in ``path``, readable by its owner only."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


@contextmanager
def stopped(servers: Iterable[RedisServer]) -> Iterator[None]:
    """Stop ``servers`` for the block, then start them again (empty when not persisted)."""
    servers = list(servers)
    for server in servers:
        server.stop()
    try:
        yield
    finally:
        for server in servers:
            server.start_ready()
