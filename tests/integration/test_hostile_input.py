"""Hostile-but-fair input to base and main: every case is a clear 4xx and writes nothing.

The JSON-body routes and the integer query parameters are read from each service's own OpenAPI,
so a route added later is covered without touching this file.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubescaler.adapters.cassandra import CassandraRepository
from kubescaler.domain.models import MAX_PROFILE_USERS, User
from kubescaler.settings_cassandra import CassandraSettings
from kubescaler_dev.services import Service

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}


@pytest.fixture
def base(base_service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_service.url, timeout=30) as client:
        assert client.delete("/data").status_code == 204
        yield client


@pytest.fixture
def main(main_service: Service, base: httpx.Client) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=main_service.url, timeout=30) as client:
        yield client


def _operations(client: httpx.Client) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, concrete path, operation) for every operation in the service's OpenAPI."""
    spec = client.get("/schema/openapi.json").json()
    out = []
    for path, item in spec["paths"].items():
        concrete = path.replace("{user_id}", str(uuid.uuid4()))
        concrete = concrete.replace("{profile_id}", str(uuid.uuid4()))
        for method, op in item.items():
            if method != "parameters":
                out.append((method.upper(), concrete, op))
    return out


def _json_body_routes(client: httpx.Client) -> list[tuple[str, str]]:
    return [(m, p) for m, p, op in _operations(client) if "requestBody" in op]


def _integer_queries(client: httpx.Client) -> list[tuple[str, str, str]]:
    return [
        (m, p, param["name"])
        for m, p, op in _operations(client)
        for param in op.get("parameters", [])
        if param["in"] == "query" and param["schema"].get("type") == "integer"
    ]


def _nothing_written(base: httpx.Client) -> None:
    assert base.get("/users").json()["items"] == []
    assert base.get("/profiles").json()["items"] == []


class _LogWatch:
    """What a service writes to its log from now on."""

    def __init__(self, log: Path) -> None:
        self.log, self.start = log, log.stat().st_size

    def new(self) -> str:
        with self.log.open("rb") as f:
            f.seek(self.start)
            return f.read().decode(errors="replace")


def test_the_services_json_routes_are_the_ones_expected(
    base: httpx.Client, main: httpx.Client
) -> None:
    """The routes the checks below walk: base's seven body routes; main reads no body."""
    assert {(m, p.split("/")[1]) for m, p in _json_body_routes(base)} == {
        ("POST", "users"),
        ("PUT", "users"),
        ("POST", "profiles"),
        ("PUT", "profiles"),
        ("POST", "bulk"),
        ("POST", "bindings"),
    }
    assert len(_json_body_routes(base)) == 7
    assert _json_body_routes(main) == []


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_400_at_any_depth_without_a_traceback(
    base: httpx.Client, base_service: Service, depth: int
) -> None:
    """Arrays or objects nested 1,000 or 100,000 deep, bare or in a field: 400, nothing logged."""
    bodies = [
        "[" * depth + "]" * depth,
        '{"a":' * depth + "1" + "}" * depth,
        '{"name": ' + "[" * depth + "]" * depth + "}",
        '{"users": ' + "[" * depth + "]" * depth + "}",
    ]
    watch = _LogWatch(base_service.log)
    routes = _json_body_routes(base)
    for method, path in routes:
        for body in bodies:
            r = base.request(method, path, content=body.encode(), headers=JSON)
            assert r.status_code == 400, (method, path, body[:20], r.text[:300])
            assert r.json()["status"] == 400
            # 1,000 passes Python 3.11's recursion limit, which msgspec obeys; a Python that
            # allows deeper may answer with the body's type error first, still a 400
            if depth == 100_000:
                assert "nested too deeply" in r.json()["error"], r.json()
    logged = watch.new()
    assert "Traceback" not in logged
    assert "RecursionError" not in logged
    _nothing_written(base)


@pytest.mark.parametrize(
    "value", ["1e3", "10.0", "1.5", "", "0x10", "+5", "012", " 5", "\uff15", "true"]
)
def test_integer_query_parameters_must_be_integers(
    base: httpx.Client, main: httpx.Client, value: str
) -> None:
    """`?users=1e3` or `?limit=10.0` is a 400 naming the parameter, on every integer parameter."""
    checked = []
    for client in (base, main):
        for method, path, name in _integer_queries(client):
            r = client.request(method, path, params={name: value})
            assert r.status_code == 400, (method, path, name, value, r.text)
            assert f"query parameter '{name}'" in r.json()["error"], r.json()
            assert "integer" in r.json()["error"]
            checked.append(f"{method} {path.split('/')[1]} {name}")
    assert sorted(checked) == sorted(
        ["GET users limit", "GET profiles limit"] * 2
        + [
            f"POST testdata {n}"
            for n in (
                "users",
                "profiles",
                "users_per_profile",
                "shared_users",
                "profiles_per_shared_user",
            )
        ]
    )
    _nothing_written(base)


def test_integers_written_as_integers_still_work(main: httpx.Client) -> None:
    """The strict check does not refuse plain integers, zero and negatives included."""
    r = main.post("/testdata", params={"users": "12", "profiles": "3", "shared_users": "0"})
    assert r.status_code == 201, r.text
    assert r.json()["users"] == 12
    r = main.get("/users", params={"limit": "-1"})
    assert r.status_code == 400
    assert "query parameter 'limit'" in r.json()["error"]


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "application/merge-patch+json",
        "application/json; charset=latin-1",
        "",
    ],
)
def test_json_routes_answer_415_for_anything_but_json(
    base: httpx.Client, content_type: str | None
) -> None:
    """A body not declared as JSON is 415 with the usual error body, and nothing is written."""
    headers = {} if content_type is None else {"content-type": content_type}
    for method, path in _json_body_routes(base):
        r = base.request(method, path, content=b'{"name": "x", "users": []}', headers=headers)
        assert r.status_code == 415, (method, path, content_type, r.text)
        body = r.json()
        assert body["status"] == 415
        assert "send Content-Type: application/json" in body["error"], body
    _nothing_written(base)


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_with_or_without_charset_is_accepted(base: httpx.Client, content_type: str) -> None:
    r = base.post("/users", content=b'{"name": "ada"}', headers={"content-type": content_type})
    assert r.status_code == 201, r.text


def test_a_bodyless_request_to_a_json_route_is_a_400_saying_the_body_is_missing(
    base: httpx.Client,
) -> None:
    r = base.post("/users")
    assert r.status_code == 400, r.text
    assert "data" in r.json()["error"]


def test_a_user_set_over_the_cap_is_refused_at_once(base: httpx.Client) -> None:
    """20,000 unknown users: a 400 naming the cap before any lookup (it took 7.6 s)."""
    users = [str(uuid.uuid4()) for _ in range(2 * MAX_PROFILE_USERS)]
    for method, path in (("POST", "/profiles"), ("PUT", f"/profiles/{uuid.uuid4()}")):
        started = time.monotonic()
        r = base.request(method, path, json={"users": users})
        assert time.monotonic() - started < 2.0
        assert r.status_code == 400, r.text
        assert f"length <= {MAX_PROFILE_USERS}" in r.json()["error"], r.json()
    r = base.post("/bulk", json={"profiles": [{"id": str(uuid.uuid4()), "users": users}]})
    assert r.status_code == 400, r.text
    assert f"length <= {MAX_PROFILE_USERS}" in r.json()["error"]
    _nothing_written(base)


def test_a_full_user_set_of_unknown_users_is_one_clear_400(base: httpx.Client) -> None:
    """At the cap, every unknown user is listed in the body and a few in the message."""
    known = base.post("/users", json={"name": "known"}).json()["id"]
    unknown = [str(uuid.uuid4()) for _ in range(MAX_PROFILE_USERS - 1)]
    r = base.post("/profiles", json={"users": [known, *unknown]})
    assert r.status_code == 400, r.text[:300]
    body = r.json()
    assert sorted(body["unknown_users"]) == sorted(unknown)
    assert f"(and {len(unknown) - 10} more)" in body["error"]
    assert len(body["error"]) < 600
    assert base.get("/profiles").json()["items"] == []


async def test_users_exist_asks_cassandra_in_batches(base_login: CassandraSettings) -> None:
    """Checking 10,000 ids is about 100 IN queries against Cassandra, not 10,000 lookups."""
    repo = CassandraRepository(base_login)
    await repo.connect()
    try:
        real = [User(id=uuid.uuid4(), name=f"real-{i}") for i in range(250)]
        await repo.insert_many(real, [])
        asked = [u.id for u in real] + [uuid.uuid4() for _ in range(MAX_PROFILE_USERS - 250)]
        queries: list[str] = []
        run = repo._run

        async def counting(name: str, params: Any, **kwargs: Any) -> Any:
            queries.append(name)
            return await run(name, params, **kwargs)

        repo._run = counting  # type: ignore[method-assign]
        found = await repo.users_exist(asked)
        assert found == {u.id for u in real}
        assert queries == ["users_in"] * (MAX_PROFILE_USERS // 100)
    finally:
        await repo.drop_all()
        await repo.close()
