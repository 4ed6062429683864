"""main's and stream's client for base, against an in-memory transport: how base's answers and
failures reach callers (no server)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import httpx
import pytest

from kubescaler.adapters.base_client import IN_FLIGHT, BaseClient, UpstreamError
from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.settings import BaseClientSettings

USER = uuid.UUID(int=1)
GONE = uuid.UUID(int=99)


def client(handler: Callable[[httpx.Request], httpx.Response]) -> BaseClient:
    return BaseClient(BaseClientSettings(url="http://base"), transport=httpx.MockTransport(handler))


async def test_a_503_from_base_names_base_and_its_own_failing_dependency() -> None:
    """base answering 503 for Cassandra: DependencyUnavailable("base") with cause cassandra."""
    body = {"status": 503, "error": "cassandra unavailable: down", "dependency": "cassandra"}
    base = client(lambda _: httpx.Response(503, json=body))
    with pytest.raises(DependencyUnavailable) as caught:
        await base.profiles_of_user(USER)
    assert caught.value.dependency == "base"
    assert caught.value.extra["cause"] == "cassandra"
    assert "base answered 503: cassandra unavailable: down" in caught.value.message


async def test_a_client_error_from_base_keeps_its_status_and_message() -> None:
    """base's 404 reaches the caller as a 404 with base's message."""
    base = client(lambda _: httpx.Response(404, json={"status": 404, "error": "user x not found"}))
    with pytest.raises(UpstreamError) as caught:
        await base.profiles_of_user(USER)
    assert (caught.value.status, caught.value.message) == (404, "user x not found")


async def test_a_non_json_error_body_is_passed_on_as_text() -> None:
    """An error page that is not JSON: its text (cut short) is the message."""
    base = client(lambda _: httpx.Response(500, text="<html>oops</html>"))
    with pytest.raises(DependencyUnavailable, match="oops"):
        await base.profiles_of_user(USER)


async def test_base_not_answering_is_dependency_base_naming_the_request() -> None:
    """A connection that fails: 503 dependency base, saying which call failed and why."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(DependencyUnavailable) as caught:
        await client(refuse).binding(USER, USER)
    assert caught.value.dependency == "base"
    assert "ConnectError calling POST /bindings" in caught.value.message


async def test_at_most_in_flight_requests_reach_httpx_and_a_long_wait_is_a_503() -> None:
    """Requests beyond IN_FLIGHT wait in front of httpx; one still waiting when its timeout
    ends is a 503 naming base and the wait; the others are answered once base answers."""
    inside = most = 0
    go = asyncio.Event()

    async def slow(_: httpx.Request) -> httpx.Response:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await go.wait()
        inside -= 1
        return httpx.Response(200, json=[])

    base = BaseClient(
        BaseClientSettings(url="http://base", timeout_s=0.2), transport=httpx.MockTransport(slow)
    )
    calls = [asyncio.create_task(base.profiles_of_user(USER)) for _ in range(IN_FLIGHT + 1)]
    done, waiting = await asyncio.wait(calls, timeout=2, return_when=asyncio.FIRST_COMPLETED)
    assert (len(done), most) == (1, IN_FLIGHT)
    with pytest.raises(DependencyUnavailable) as caught:
        done.pop().result()
    assert caught.value.dependency == "base"
    assert f"waited 0.2 s behind {IN_FLIGHT} requests to base" in caught.value.message
    go.set()
    assert await asyncio.gather(*waiting) == [[]] * IN_FLIGHT
    await base.close()


async def test_connection_retries_are_httpxs_own() -> None:
    """The default transport retries refused connections as configured (no loop of our own)."""
    base = BaseClient(BaseClientSettings(url="http://127.0.0.1:1", retries=3))
    transport = base._http._transport
    assert isinstance(transport, httpx.AsyncHTTPTransport)
    assert transport._pool._retries == 3
    await base.close()


async def test_bindings_asked_in_the_same_moment_go_as_one_request() -> None:
    """Fifty concurrent lookups: one POST /bindings, each caller gets its own pair's answer; an
    unknown profile is a 404 naming it, like the single-pair route."""
    bodies: list[dict[str, list[dict[str, str]]]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        items = [
            {
                **p,
                "bound": p["profile_id"] != str(GONE),
                "missing": "profile" if p["profile_id"] == str(GONE) else None,
            }
            for p in body["pairs"]
        ]
        return httpx.Response(200, json={"items": items})

    base = client(answer)
    profiles = [uuid.UUID(int=100 + i) for i in range(50)]
    got = await asyncio.gather(*(base.binding(USER, p) for p in profiles))
    assert [b.profile_id for b in got] == profiles
    assert all(b.bound for b in got)
    assert len(bodies) == 1
    with pytest.raises(UpstreamError, match=f"profile {GONE} not found") as caught:
        await base.binding(USER, GONE)
    assert caught.value.status == 404


async def test_a_failing_bindings_request_fails_every_caller_in_it() -> None:
    """base down while three lookups wait: each gets the 503 naming base."""
    base = client(lambda _: httpx.Response(503, json={"error": "x", "dependency": "cassandra"}))
    got = await asyncio.gather(
        *(base.binding(USER, uuid.UUID(int=i)) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(e, DependencyUnavailable) and e.dependency == "base" for e in got)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"<html>proxy error</html>", "unreadable answer"),
        (json.dumps({"items": []}).encode(), "answered 0 of 2 pairs"),
    ],
)
async def test_an_unreadable_or_short_bindings_answer_is_a_503_naming_base(
    body: bytes, says: str
) -> None:
    """A 200 from base that is not the bindings asked for: each caller gets a 503 naming base
    and what was wrong, not a crash or a hang."""
    base = client(lambda _: httpx.Response(200, content=body))
    got = await asyncio.gather(
        *(base.binding(USER, uuid.UUID(int=i)) for i in range(2)), return_exceptions=True
    )
    assert all(isinstance(e, DependencyUnavailable) and e.dependency == "base" for e in got), got
    assert all(says in str(e) for e in got), got
