"""Redis clients that survive a restarted server and a burst of callers.

redis-py keeps pooled connections; after a Redis restart the first command on each stale one
fails with "Connection closed by server" unless ``retry_on_error`` names ConnectionError. Every
client of the streams/state Redis is built here so a restart costs a retry, not a 503. (The
Redlock masters get one immediate retry only, in adapters/redlock.py: there a slow master is a
vote decided by quorum, not something to wait for.)

The pool holds at most POOL_CONNECTIONS connections, and a caller that finds them all busy
waits for one (up to the socket timeout) instead of failing: redis-py's own pool raises "Too
many connections" at its 100th concurrent command, which 200 simultaneous stream opens reach.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

RETRIES = 2


def retry_options(timeout_s: float) -> dict[str, Any]:
    """Connection keyword arguments shared by redis-py clients and FastStream's RedisBroker."""
    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        # Only a dropped connection is retried: a command that timed out met a stalled server,
        # and trying it again would only multiply the caller's wait (and its 503's delay).
        "retry": Retry(
            ExponentialBackoff(cap=0.2, base=0.01),
            RETRIES,
            supported_errors=(RedisConnectionError,),
        ),
        "retry_on_error": [RedisConnectionError],
    }


POOL_CONNECTIONS = 100


def connect(url: str, timeout_s: float) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url, max_connections=POOL_CONNECTIONS, timeout=timeout_s, **retry_options(timeout_s)
    )
    return Redis.from_pool(pool)
