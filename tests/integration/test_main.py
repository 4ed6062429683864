"""The main service as a real process, over a real base, Cassandra and Redis."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import redis

from kubescaler.adapters.lockstate import user_key
from kubescaler_dev.redis import RedisServer
from kubescaler_dev.services import Service, start_service

pytestmark = pytest.mark.integration


@pytest.fixture
def main(main_service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=main_service.url, timeout=60) as client:
        assert client.delete("/testdata").status_code == 204
        yield client


def _all(client: httpx.Client, path: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    params: dict[str, str | int] = {"limit": 7}
    while True:
        r = client.get(path, params=params)
        assert r.status_code == 200, r.text
        items += r.json()
        nxt = r.headers.get("x-next-page")
        if not nxt:
            return items
        params = {"limit": 7, "page": nxt}


def test_testdata_create_list_suggested_drop(main: httpx.Client) -> None:
    """Test data lands in base; suggested lists exactly the users with 2+ profiles; drop clears."""
    r = main.post(
        "/testdata",
        params={
            "users": 40,
            "profiles": 10,
            "shared_users": 6,
            "users_per_profile": 2,
            "profiles_per_shared_user": 3,
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["users"] == 40
    users, profiles = _all(main, "/users"), _all(main, "/profiles")
    assert len(users) == 40
    assert len(profiles) == 10
    per_user = Counter(u for p in profiles for u in p["users"])  # type: ignore[attr-defined]
    want = sorted(u for u, n in per_user.items() if n >= 2)
    got = main.get("/suggested").json()
    assert [s["id"] for s in got] == want
    assert len(got) == 6
    for s in got:
        assert len(s["profiles"]) == 3
    assert main.delete("/testdata").status_code == 204
    assert main.get("/users").json() == []
    assert main.get("/suggested").json() == []


def test_login_lists_only_launched_profiles(main: httpx.Client, redis_server: RedisServer) -> None:
    """/login filters the user's profiles by the live lock state in Redis; expired ones drop."""
    main.post(
        "/testdata",
        params={
            "users": 5,
            "profiles": 4,
            "shared_users": 1,
            "users_per_profile": 1,
            "profiles_per_shared_user": 4,
        },
    )
    user = main.get("/suggested").json()[0]
    profiles = user["profiles"]
    assert main.get(f"/login/{user['id']}").json() == []
    now = int(time.time() * 1000)
    stranger = str(uuid.uuid4())  # launched but not the user's: must not be listed
    r = redis.Redis.from_url(redis_server.url, **redis_server.login())
    r.zadd(
        user_key(uuid.UUID(user["id"])),
        {profiles[0]: now + 60_000, profiles[1]: now - 1, stranger: now + 60_000},
    )
    r.close()
    assert main.get(f"/login/{user['id']}").json() == [profiles[0]]


def test_main_errors(main: httpx.Client) -> None:
    """Malformed ids are 400, unknown users 404, bad sizes 400 - each saying what is wrong."""
    r = main.get("/login/xyz")
    assert r.status_code == 400
    assert "user id is not a valid UUID" in r.json()["error"]
    r = main.get(f"/login/{uuid.uuid4()}")
    assert r.status_code == 404
    r = main.post("/testdata", params={"users": 5, "shared_users": 9})
    assert r.status_code == 400
    assert "shared_users" in r.json()["error"]
    r = main.post("/testdata", params={"users": -1})
    assert r.status_code == 400
    assert "query parameter 'users'" in r.json()["error"]
    assert main.get("/users").json() == []


def test_admin_token_guards_mutations(
    redis_server: RedisServer, base_service: Service, test_state: object
) -> None:
    """With KUBESCALER_ADMIN_TOKEN set, mutating endpoints need it; reads do not."""
    env = {
        "KUBESCALER_REDIS_URL": redis_server.url,
        "KUBESCALER_BASE_URL": base_service.url,
        "KUBESCALER_ADMIN_TOKEN": "s3cret",
        "KUBESCALER_LOG_LEVEL": "warning",
    }
    svc = start_service(
        "main", env, base_service.log.parent, name="main-admin", passwords=redis_server.passwords
    )
    try:
        assert httpx.post(f"{svc.url}/testdata").status_code == 401
        assert httpx.delete(f"{svc.url}/testdata").status_code == 401
        assert httpx.get(f"{svc.url}/users").status_code == 200
    finally:
        svc.stop()


def test_the_public_paths_answer_under_main_too_and_nothing_else_does(main: httpx.Client) -> None:
    """A plain Ingress passes /main/<public path> on unchanged: main answers it as the path
    itself; its internal paths (metrics, probes, schema) are not reachable under /main."""
    made = main.post("/main/testdata", params={"users": 10, "profiles": 3})
    assert made.status_code == 201, made.text
    assert main.get("/main/users").json() == main.get("/users").json()
    assert main.get("/main/profiles").json() == main.get("/profiles").json()
    user = main.get("/users").json()[0]["id"]
    assert main.get(f"/main/login/{user}").status_code == 200
    for internal in ("/main/metrics", "/main/readyz", "/main/schema/openapi.json"):
        assert main.get(internal).status_code == 404, internal
    assert "/main/users" not in main.get("/schema/openapi.json").json()["paths"]
