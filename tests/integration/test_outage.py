"""Dependencies going down mid-run are reported as 503 naming them, and recovery follows."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from kubescaler.adapters import redis_client
from kubescaler.settings import RedisSettings
from kubescaler_dev.cassandra import CassandraNode
from kubescaler_dev.redis import RedisServer
from kubescaler_dev.services import Service

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _eventually(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.25)


def test_base_down_is_503_naming_base_then_recovers(
    main_service: Service, base_service: Service
) -> None:
    """main answers 503 naming base while base is stopped, and 200 once it is back."""
    base_service.stop()
    try:
        for path in (
            "/users",
            "/profiles",
            "/suggested",
            f"/login/{'0' * 8}-0000-4000-8000-{'0' * 12}",
        ):
            r = httpx.get(main_service.url + path, timeout=30)
            assert r.status_code == 503, (path, r.text)
            assert r.json()["dependency"] == "base", r.json()
            assert "base unavailable" in r.json()["error"]
        ready = httpx.get(main_service.url + "/readyz")
        assert ready.status_code == 200  # main stays in rotation, its answers name base
        assert ready.json()["status"] == "degraded"
        assert ready.json()["failing"] == ["base"]
    finally:
        base_service.start_ready()
    assert httpx.get(main_service.url + "/users").status_code == 200


def test_redis_down_is_503_naming_redis(main_service: Service, redis_server: RedisServer) -> None:
    """/login needs the lock state: with Redis stopped it is 503 naming redis, not an empty list."""
    main = httpx.Client(base_url=main_service.url, timeout=30)
    main.post(
        "/testdata",
        params={"users": 3, "profiles": 2, "shared_users": 1, "profiles_per_shared_user": 2},
    )
    user = main.get("/suggested").json()[0]["id"]
    redis_server.stop()
    try:
        r = main.get(f"/login/{user}")
        assert r.status_code == 503, r.text
        assert r.json()["dependency"] == "redis"
    finally:
        redis_server.start_ready()
    _eventually(lambda: main.get(f"/login/{user}").status_code == 200)
    main.close()


def test_cassandra_down_is_503_naming_it_then_recovers(
    main_service: Service, base_service: Service, cassandra_node: CassandraNode
) -> None:
    """Cassandra stopped: base says 503 cassandra, main 503 base (cause cassandra); then back."""
    base = httpx.Client(base_url=base_service.url, timeout=30)
    main = httpx.Client(base_url=main_service.url, timeout=30)
    assert main.delete("/testdata").status_code == 204
    assert main.post("/testdata", params={"users": 10, "profiles": 3}).status_code == 201
    cassandra_node.stop()
    try:
        r = base.get("/users")
        assert r.status_code == 503, r.text
        assert r.json()["dependency"] == "cassandra"
        r = main.get("/profiles")
        assert r.status_code == 503, r.text
        assert r.json()["dependency"] == "base"
        assert r.json()["cause"] == "cassandra"
        ready = base.get("/readyz")
        assert (ready.status_code, ready.json()["failing"]) == (200, ["cassandra"])
    finally:
        cassandra_node.start_ready(timeout=240)
    _eventually(lambda: base.get("/users").status_code == 200)
    assert len(main.get("/users").json()) == 10  # the data survived the restart
    base.close()
    main.close()


async def test_a_burst_beyond_the_pool_waits_for_connections_instead_of_failing(
    redis_server: RedisServer,
) -> None:
    """300 commands at once on one client, each holding its connection 50 ms (a BLPOP that
    times out): all answered by a pool of 100, where redis-py's own pool refuses the 101st with
    "Too many connections"."""
    client = redis_client.connect(RedisSettings(url=redis_server.url, **redis_server.login()))
    try:
        key = f"burst:{uuid.uuid4().hex}"
        got = await asyncio.gather(*(client.blpop([key], timeout=0.05) for _ in range(300)))
    finally:
        await client.aclose()
    assert got == [None] * 300
