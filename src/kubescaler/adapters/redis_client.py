"""Redis clients that survive a restarted server and a burst of callers.

redis-py keeps pooled connections; after a Redis restart the first command on each stale one
fails with "Connection closed by server" unless ``retry_on_error`` names ConnectionError. Every
client of the streams/state Redis is built here so a restart costs a retry, not a 503. (The
Redlock masters get one immediate retry only, in adapters/redlock.py: there a slow master is a
vote decided by quorum, not something to wait for.)

A command that times out (a stalled server) is retried by one client only: the lock-keeper's
FastStream broker (:func:`worker_retry_options`), which has no caller waiting and would
otherwise sit out FastStream's fixed pause after a failed read. Every other client
(:func:`retry_options`) fails fast, so a stall gives its caller a prompt 503.

The pool holds at most POOL_CONNECTIONS connections, and a caller that finds them all busy
waits for one (up to the socket timeout) instead of failing: redis-py's own pool raises "Too
many connections" at its 100th concurrent command, which 200 simultaneous stream opens reach.

Commands are packed in C (:func:`packing_in_c`): redis-py 8.1's asyncio connections pack every
command in Python, re-joining the buffer for each argument, while its sync ones use hiredis.

With ``KUBESCALER_REDIS_SENTINELS`` set, the state Redis is found through Redis Sentinel
(:func:`connect`, :func:`sentinel_options`): every new connection asks a Sentinel for the
current primary, so a connection that a failover dropped, or a write that met the old primary
demoted to a replica (READONLY, which redis-py turns into a ConnectionError), is retried as
above and lands on the new primary. Nothing restarts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import hiredis
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kubescaler.settings_redis import RedisSettings

RETRIES = 2
T = TypeVar("T")


def retry_options(timeout_s: float) -> dict[str, Any]:
    """Connection keyword arguments of the request path's redis-py clients (:func:`connect`).

    Only a dropped connection is retried: a command that timed out met a stalled server, and
    trying it again would only multiply the caller's wait (and its 503's delay).
    """
    return _options(timeout_s, (RedisConnectionError,))


#: How long the lock-keeper's broker keeps retrying a read before it gives up: longer than a
#: Sentinel failover (about 3 s here with Sentinel's down-after 1 s, 6-8 s with production's
#: 5 s), a restart, or a short stall.
WORKER_RIDE_OUT_S = 15.0


def worker_retry_options(timeout_s: float) -> dict[str, Any]:
    """Connection keyword arguments of the lock-keeper's FastStream RedisBroker.

    A read that failed is retried, a timed-out one too, for up to :data:`WORKER_RIDE_OUT_S`
    (:class:`Patient`): nobody waits on its reads, and a read that fails instead costs
    FastStream's fixed 5 s pause before the next one (every lock command waits it out), which
    would add up to 5 s to a failover's or a restart's pause. Safe because the broker only
    reads (XREADGROUP, XAUTOCLAIM; XGROUP CREATE at start, which a repeat leaves as it was): a
    timed-out command may still run once the server resumes, which for a read leaves entries
    pending that the claiming subscriber takes over, but for a write would apply it twice. The
    keeper's writes go through :func:`connect`, which does not retry timeouts.
    """
    retried = (RedisConnectionError, RedisTimeoutError)
    return {**_options(timeout_s, retried), "retry": Patient(WORKER_RIDE_OUT_S, retried)}


class Patient(Retry):
    """Retries its errors for ``budget_s`` seconds from the first failure, however many tries
    that takes (backoff doubling from 10 ms to ``cap_s``), then raises the last one."""

    def __init__(
        self, budget_s: float, supported_errors: tuple[type[RedisError], ...], cap_s: float = 0.25
    ) -> None:
        super().__init__(ExponentialBackoff(cap=cap_s, base=0.01), -1, supported_errors)
        self.budget_s = budget_s

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        failures, deadline = 0, 0.0
        while True:
            try:
                return await do()
            except self._supported_errors as error:
                if is_retryable and not is_retryable(error):
                    raise
                failures += 1
                await (fail(error, failures) if with_failure_count else fail(error))
                now = time.monotonic()
                deadline = deadline or now + self.budget_s
                if now >= deadline:
                    raise
                await asyncio.sleep(min(self._backoff.compute(failures), deadline - now))


def _options(timeout_s: float, retried: tuple[type[RedisError], ...]) -> dict[str, Any]:
    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.01), RETRIES, supported_errors=retried),
        "retry_on_error": list(retried),
    }


POOL_CONNECTIONS = 100


def connect(redis: RedisSettings) -> Redis:
    """A client of the state Redis: ``redis.url``, or the primary the Sentinels name."""
    timeout_s = redis.timeout_s
    if not redis.sentinels:
        pool = BlockingConnectionPool.from_url(
            redis.url,
            max_connections=POOL_CONNECTIONS,
            timeout=timeout_s,
            **retry_options(timeout_s),
            **credentials(redis.username, redis.password),
        )
        return Redis.from_pool(packing_in_c(pool))
    options = sentinel_options(redis)
    sentinel = Sentinel(redis.sentinel_addresses, **options)  # type: ignore[no-untyped-call]
    client: Redis = sentinel.master_for(
        redis.sentinel_master,
        connection_pool_class=SentinelPool,
        connection_class=_packed(SentinelConnection),
        max_connections=POOL_CONNECTIONS,
        timeout=timeout_s,
        **retry_options(timeout_s),
    )
    return client


def sentinel_options(redis: RedisSettings) -> dict[str, Any]:
    """Keyword arguments of a redis-py ``Sentinel`` for ``redis``: the primary's database and
    password, and the Sentinels' own connections, which are never retried: a Sentinel that
    does not answer is passed over for the next one (redis-py's default retries would hold
    every lookup up to seconds on it)."""
    sentinel = {
        "socket_timeout": redis.timeout_s,
        "socket_connect_timeout": redis.timeout_s,
        "retry": Retry(NoBackoff(), 0),
        **credentials("", redis.sentinel_password),
    }
    return {
        "sentinel_kwargs": sentinel,
        "db": int(parse_url(redis.url).get("db", 0)),
        **credentials(redis.username, redis.password),
    }


def credentials(username: str, password: str) -> dict[str, Any]:
    """redis-py's keyword arguments for an ACL user (``AUTH username password``), or for the
    ``default`` user's password alone; none when both are empty. Credentials are passed so,
    never in a URL: URLs get logged."""
    out: dict[str, Any] = {"password": password} if password else {}
    if username:
        out["username"] = username
    return out


class SentinelConnection(SentinelManagedConnection):
    """A connection to the primary that asks the Sentinels for its address before every
    (re)connection. redis-py 8.1 asks only when a pool hands out a connection: one that drops
    while in use reconnects, through its retries, to the address it had (redis/redis-py#3874),
    which after a failover is the dead primary. Measured in the failover test: the keeper's
    broker, retrying so, read nothing for 15-20 s after the promotion in 4 runs of 6."""

    async def _connect(self) -> None:
        if self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super()._connect()  # type: ignore[no-untyped-call]


class SentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's SentinelConnectionPool (connections to the primary the Sentinels name) that
    waits for a free connection as :func:`connect`'s plain pool does, and closes its Sentinel
    clients with itself."""

    async def aclose(self) -> None:
        await super().aclose()
        await self.sentinel_manager.aclose()


_UTF8 = frozenset({"utf-8", "utf8"})  # the encodings hiredis packs str in


class PackedInC(AbstractConnection):
    """Packs a command with hiredis's ``pack_command``: the same bytes as redis-py's packer.

    Measured here: a commit script call of 27 outcomes (309 arguments, 28 KB) takes 460-530 µs
    to pack in Python and 45 µs in C. A batch makes several such calls (the claim, a vote per
    master, the commit), each packed on the keeper's one event loop: at 64 acquires in flight
    the keeper spent 186-206 µs of CPU per acquire before, 142-166 after.

    What hiredis does not take as redis-py does (a first argument holding two words such as
    "SCRIPT LOAD", a memoryview, a bool that must raise DataError, a text encoding other than
    UTF-8) goes to redis-py's packer.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if self.encoder.encoding.lower() not in _UTF8 or (
            (b" " if isinstance(first, bytes) else " ") in first
        ):
            return super().pack_command(*args)
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # not str, bytes, int or float
            return super().pack_command(*args)


def packing_in_c(pool: ConnectionPool) -> ConnectionPool:
    """``pool``, its connections (of the kind its URL chose) packing commands in C."""
    pool.connection_class = _packed(pool.connection_class)
    return pool


_PACKED: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _packed(kind: type[AbstractConnection]) -> type[AbstractConnection]:
    """``kind`` with PackedInC's packer (one class per kind, made once)."""
    if issubclass(kind, PackedInC):
        return kind
    if kind not in _PACKED:
        _PACKED[kind] = type(f"PackedInC{kind.__name__}", (PackedInC, kind), {})
    return _PACKED[kind]


def refused_login(redis: RedisSettings, masters: bool = False) -> str | None:
    """What a process checks once at start-up: does every Redis it uses (the state Redis, found
    through the Sentinels when they are set; with ``masters`` the Redlock masters too) take its
    credentials? The one line that names the store and the settings to fix when one refuses
    them, else None. A store that cannot be reached is no credential problem: the process
    starts, and its readiness reports the store down as for any outage."""
    import redis as sync_redis
    from redis.retry import Retry as SyncRetry
    from redis.sentinel import Sentinel as SyncSentinel

    def refused(host: str, port: int, user: str, password: str, what: str, names: str) -> str:
        client = sync_redis.Redis(
            host=host,
            port=port,
            socket_timeout=redis.timeout_s,
            socket_connect_timeout=redis.timeout_s,
            retry=SyncRetry(NoBackoff(), 0),
            **credentials(user, password),
        )
        try:
            client.ping()
        except (sync_redis.AuthenticationError, sync_redis.ResponseError) as exc:
            if not password:
                code = "NOAUTH"  # no login, and Redis wants one
            elif isinstance(exc, sync_redis.exceptions.NoPermissionError):
                code = "NOPERM"
            else:
                code = "WRONGPASS"  # an unknown user, a wrong password, or a user that is off
            who = f"user {user!r}" if user else ("its password" if password else "no login")
            return f"{what} at {host}:{port} refused {who} ({code}): check {names}"
        except (sync_redis.RedisError, OSError):
            return ""
        finally:
            client.close()
        return ""

    state_names = "KUBESCALER_REDIS_USERNAME and KUBESCALER_REDIS_PASSWORD"
    if redis.sentinels:
        for host, port in redis.sentinel_addresses:
            line = refused(
                host,
                port,
                "",
                redis.sentinel_password,
                "Redis Sentinel",
                "KUBESCALER_REDIS_SENTINEL_PASSWORD",
            )
            if line:
                return line
        found = SyncSentinel(  # type: ignore[no-untyped-call]
            redis.sentinel_addresses,
            sentinel_kwargs={
                "socket_timeout": redis.timeout_s,
                **credentials("", redis.sentinel_password),
            },
        )
        try:
            host, port = found.discover_master(redis.sentinel_master)  # type: ignore[no-untyped-call]
        except (sync_redis.RedisError, OSError):
            host = ""
    else:
        url = parse_url(redis.url)
        host, port = url.get("host", "127.0.0.1"), int(url.get("port", 6379))
    if host:
        line = refused(host, port, redis.username, redis.password, "Redis", state_names)
        if line:
            return line
    if not masters:
        return None
    user, password = redis.lock_credentials
    lock_names = (
        "KUBESCALER_REDIS_LOCK_USERNAME and KUBESCALER_REDIS_LOCK_PASSWORD"
        if redis.lock_username or redis.lock_password
        else state_names
    )
    for master in redis.redlock_urls:
        url = parse_url(master)
        host, port = url.get("host", "127.0.0.1"), int(url.get("port", 6379))
        line = refused(host, port, user, password, "Redlock master", lock_names)
        if line:
            return line
    return None
