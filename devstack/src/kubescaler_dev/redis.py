"""Debian's redis-server as a local process, its data kept in a folder of the checkout."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

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
    last second's writes in a crash forgets fencing counters it agreed to)."""

    def __init__(
        self,
        port: int,
        data_dir: Path,
        persist: bool = True,
        replica_of: int | None = None,
        min_replicas: int = 0,
        fsync_always: bool = False,
    ) -> None:
        self.port = port
        self.data_dir = data_dir
        self.replica_of = replica_of
        argv = [
            redis_binary(),
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
            "no",
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

    def ping(self) -> bool:
        client = redis.Redis(port=self.port, socket_timeout=0.5, retry=ONCE)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def role(self) -> str:
        """``master`` or ``slave`` (as INFO says), or ``down``."""
        client = redis.Redis(port=self.port, socket_timeout=0.5, retry=ONCE)
        try:
            return str(client.info("replication")["role"])
        except redis.RedisError:
            return "down"
        finally:
            client.close()

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        super().start()

    def start_ready(self, timeout: float = 15.0) -> None:
        self.start()
        self.wait_until(self.ping, timeout)


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
