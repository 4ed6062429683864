"""The base service over HTTP, as a real process on a real Cassandra."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from kubescaler_dev.services import Service

pytestmark = pytest.mark.integration


@pytest.fixture
def base(base_service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_service.url, timeout=10) as client:
        assert client.delete("/data").status_code == 204
        yield client


def _user(base: httpx.Client, name: str) -> dict[str, str]:
    r = base.post("/users", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_user_crud_round_trip(base: httpx.Client) -> None:
    """A user can be created, read, renamed, listed and deleted."""
    user = _user(base, "ada")
    assert base.get(f"/users/{user['id']}").json() == user
    r = base.put(f"/users/{user['id']}", json={"name": "ada lovelace"})
    assert r.status_code == 200
    assert r.json()["name"] == "ada lovelace"
    assert [u["name"] for u in base.get("/users").json()["items"]] == ["ada lovelace"]
    assert base.delete(f"/users/{user['id']}").status_code == 204
    assert base.get(f"/users/{user['id']}").status_code == 404


def test_profile_crud_and_profiles_of_user(base: httpx.Client) -> None:
    """Profiles bind users; a user in several profiles finds them all through the index."""
    a, b, c = (_user(base, n)["id"] for n in "abc")
    p1 = base.post("/profiles", json={"users": [a, b]}).json()
    p2 = base.post("/profiles", json={"users": [a]}).json()
    p3 = base.post("/profiles", json={"users": [c]}).json()
    mine = base.get(f"/users/{a}/profiles").json()
    assert sorted(p["id"] for p in mine) == sorted([p1["id"], p2["id"]])
    assert [p["id"] for p in base.get(f"/users/{c}/profiles").json()] == [p3["id"]]
    assert base.get(f"/users/{b}/profiles/{p1['id']}").json()["bound"] is True
    assert base.get(f"/users/{b}/profiles/{p2['id']}").json()["bound"] is False
    r = base.put(f"/profiles/{p2['id']}", json={"users": [a, c]})
    assert r.status_code == 200
    assert len(base.get(f"/users/{c}/profiles").json()) == 2
    assert base.delete(f"/profiles/{p3['id']}").status_code == 204
    assert base.get(f"/profiles/{p3['id']}").status_code == 404


def test_deleting_a_user_unbinds_it_everywhere(base: httpx.Client) -> None:
    """No profile keeps pointing at a deleted user."""
    a, b = _user(base, "a")["id"], _user(base, "b")["id"]
    p = base.post("/profiles", json={"users": [a, b]}).json()
    assert base.delete(f"/users/{a}").status_code == 204
    assert base.get(f"/profiles/{p['id']}").json()["users"] == [b]


def test_lists_page_with_tokens(base: httpx.Client) -> None:
    """Lists come a page at a time; following `next` visits every row exactly once."""
    made = {_user(base, f"u{i}")["id"] for i in range(7)}
    seen: list[str] = []
    page = None
    while True:
        params: dict[str, str | int] = {"limit": 3, **({"page": page} if page else {})}
        body = base.get("/users", params=params).json()
        assert len(body["items"]) <= 3
        seen += [u["id"] for u in body["items"]]
        page = body["next"]
        if page is None:
            break
    assert sorted(seen) == sorted(made)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("GET", "/users/not-a-uuid", None, 400, "user id is not a valid UUID"),
        ("GET", "/profiles/123", None, 400, "profile id is not a valid UUID"),
        ("GET", f"/users/{uuid.uuid4()}", None, 404, "not found"),
        ("GET", f"/users/{uuid.uuid4()}/profiles", None, 404, "not found"),
        ("PUT", f"/users/{uuid.uuid4()}", {"name": "x"}, 404, "not found"),
        ("DELETE", f"/profiles/{uuid.uuid4()}", None, 404, "not found"),
        ("POST", "/users", {"name": ""}, 400, "body field 'name'"),
        ("POST", "/users", {"nam": "x"}, 400, "invalid request"),
        ("POST", "/users", {"name": "x", "extra": 1}, 400, "unknown field"),
        ("POST", "/profiles", {"users": ["nope"]}, 400, "body field 'users[0]'"),
        ("POST", "/profiles", {"users": [str(uuid.UUID(int=7))]}, 400, "unknown users"),
        ("GET", "/users?limit=0", None, 400, "query parameter 'limit'"),
        ("GET", "/users?page=%%%", None, 400, "page token"),
        ("GET", "/users?page=AAAAAAAA", None, 400, "page token"),
    ],
)
def test_bad_input_is_a_clear_error(
    base: httpx.Client, method: str, path: str, body: object, status: int, says: str
) -> None:
    """Malformed ids and bodies are 400, unknown ids 404, each with a message saying what."""
    r = base.request(method, path, json=body)
    assert r.status_code == status, r.text
    assert says in r.json()["error"], r.json()


def test_malformed_json_and_oversized_bodies(base: httpx.Client) -> None:
    """Broken JSON is 400; a body over the limit is 413; neither writes anything."""
    r = base.post("/users", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    big = b'{"name": "' + b"x" * 2_000_000 + b'"}'
    r = base.post("/users", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert base.get("/users").json()["items"] == []


def test_duplicate_ids_conflict(base: httpx.Client) -> None:
    """Creating a user with an id that exists is 409 and does not overwrite it."""
    user = _user(base, "first")
    r = base.post("/users", json={"id": user["id"], "name": "second"})
    assert r.status_code == 409
    assert base.get(f"/users/{user['id']}").json()["name"] == "first"


def test_health_and_metrics(base: httpx.Client) -> None:
    """Liveness, readiness naming Cassandra, and Prometheus metrics."""
    assert base.get("/healthz").status_code == 200
    ready = base.get("/readyz").json()
    assert ready["checks"] == {"cassandra": "ok"}
    base.get("/users")
    metrics = base.get("/metrics").text
    assert "kubescaler_http_requests_total" in metrics


def test_many_bindings_are_answered_in_one_request(base: httpx.Client) -> None:
    """POST /bindings: each pair bound or not, in the order asked; an unknown profile or user
    is not bound and named in `missing`; more pairs than the cap is a 400."""
    a, b = (_user(base, n)["id"] for n in "ab")
    p = base.post("/profiles", json={"users": [a]}).json()["id"]
    ghost = str(uuid.uuid4())
    pairs = [(a, p), (b, p), (a, ghost), (ghost, p)]
    r = base.post("/bindings", json={"pairs": [{"user_id": u, "profile_id": q} for u, q in pairs]})
    assert r.status_code == 200, r.text
    assert [(i["bound"], i["missing"]) for i in r.json()["items"]] == [
        (True, None),
        (False, None),
        (False, "profile"),
        (False, "user"),
    ]
    assert [(i["user_id"], i["profile_id"]) for i in r.json()["items"]] == pairs
    too_many = [{"user_id": a, "profile_id": p}] * 1001
    assert base.post("/bindings", json={"pairs": too_many}).status_code == 400
