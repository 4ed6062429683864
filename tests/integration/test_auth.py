"""The auth mode on real processes: main and a stream instance with auth on, behind nginx.

Every refusal is checked on the command stream too: a refused request publishes no lock
command (the commands naming the test's pair are counted on the real Redis Stream).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis

from kubescaler_dev.nginx import Nginx
from kubescaler_dev.redis import RedisServer
from kubescaler_dev.services import Service

pytestmark = pytest.mark.integration

Mint = Callable[..., str]
ADMIN = "00000000-0000-0000-0000-00000000a0a0"
COMMANDS = "kubescaler:lock:commands"
ADMIN_TOKEN = "test-admin-token"  # conftest's AUTH_ADMIN_TOKEN


@dataclass
class Pair:
    user: str
    profile: str
    other_profile: str  # a profile the user is NOT bound to

    def path(self, session: str | None = None, **query: str) -> str:
        params = {**({"session": session} if session else {}), **query}
        q = "?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""
        return f"/stream/{self.user}/{self.profile}{q}"


MakePairs = Callable[..., list[tuple[str, str, str]]]  # the shared_user_pairs fixture


@pytest.fixture(scope="module")
def pairs(auth_main: Service, mint_token: Mint, shared_user_pairs: MakePairs) -> list[Pair]:
    """Fresh test data, made through the auth-on main with an admin token."""
    admin = {"Authorization": f"Bearer {mint_token(ADMIN, admin=True)}"}
    with httpx.Client(base_url=auth_main.url, timeout=60, headers=admin) as main:
        return [Pair(*t) for t in shared_user_pairs(main, 40, 20, 16)]


@pytest.fixture
def pair(pairs: list[Pair]) -> Pair:
    return pairs.pop()


@pytest.fixture(scope="module")
def commands(redis_server: RedisServer) -> Iterator[Callable[[Pair], int]]:
    """How many lock commands on the command stream name the pair."""
    client = redis.Redis.from_url(redis_server.url, **redis_server.login())

    def count(pair: Pair) -> int:
        return sum(
            1
            for _, fields in client.xrange(COMMANDS)
            if pair.user.encode() in fields[b"__data__"]
            and pair.profile.encode() in fields[b"__data__"]
        )

    yield count
    client.close()


@dataclass
class Opened:
    status: int
    headers: httpx.Headers
    body: Any  # the JSON error body of a refusal
    event: str | None  # the first SSE event of a stream


def open_once(url: str, **kwargs: Any) -> Opened:
    """Open a stream, read its first event (or its refusal), and close it."""
    with httpx.Client(timeout=10) as client, client.stream("GET", url, **kwargs) as r:
        if r.status_code != 200:
            r.read()
            return Opened(r.status_code, r.headers, r.json(), None)
        for line in r.iter_lines():
            if line.startswith("event: "):
                return Opened(200, r.headers, None, line.removeprefix("event: "))
    raise AssertionError(f"{url}: the stream ended without an event")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(user: str, **extra: Any) -> dict[str, Any]:
    exp = int(time.time()) + 300
    return {"sub": user, "iss": "kubescaler-local", "aud": "kubescaler", "exp": exp, **extra}


SECRET = "test-auth-secret-of-at-least-32-bytes"  # conftest's AUTH_SECRET

#: name -> (a token for the pair's user made wrong in that one way, status, words in the error)
BAD_TOKENS: dict[str, tuple[Callable[[str], str], int, str]] = {
    "expired": (
        lambda u: jwt.encode(claims(u, exp=int(time.time()) - 120), SECRET),
        401,
        "expired",
    ),
    "wrong-audience": (
        lambda u: jwt.encode(claims(u, aud="another-service"), SECRET),
        401,
        "audience",
    ),
    "wrong-signature": (
        lambda u: jwt.encode(claims(u), "an-attacker-secret-of-thirty-two-bytes"),
        401,
        "signature",
    ),
    "alg-none": (
        lambda u: f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(u))}.",
        401,
        "algorithm",
    ),
    "wrong-issuer": (lambda u: jwt.encode(claims(u, iss="evil"), SECRET), 401, "issuer"),
    "another-user": (lambda u: jwt.encode(claims(str(uuid.uuid4())), SECRET), 403, "not for"),
}


def test_a_stream_without_a_token_is_401_and_publishes_nothing(
    auth_stream: Service, pair: Pair, commands: Callable[[Pair], int]
) -> None:
    """No token: 401 saying how to send one, a WWW-Authenticate header, no lock command."""
    got = open_once(auth_stream.url + pair.path("nosession-1"))
    assert got.status == 401, got.body
    assert "a token is needed" in got.body["error"]
    assert got.headers["www-authenticate"].startswith("Bearer")
    assert commands(pair) == 0
    metrics = httpx.get(auth_stream.url + "/metrics").text
    assert 'kubescaler_stream_refused_total{reason="unauthorized"}' in metrics


@pytest.mark.parametrize("form", ["header", "query", "cookie"])
@pytest.mark.parametrize("bad", list(BAD_TOKENS))
def test_a_bad_token_is_refused_in_every_form_before_the_lock_path(
    auth_stream: Service, pair: Pair, commands: Callable[[Pair], int], bad: str, form: str
) -> None:
    """Expired, wrong-audience, wrong-signature, alg none, wrong-issuer: 401; another user's:
    403; in the header, ?access_token= or the cookie alike; and no lock command for any."""
    make, status, words = BAD_TOKENS[bad]
    token = make(pair.user)
    session = f"bad-{uuid.uuid4().hex[:12]}"
    url = auth_stream.url + pair.path(session)
    if form == "header":
        got = open_once(url, headers=bearer(token))
    elif form == "query":
        got = open_once(auth_stream.url + pair.path(session, access_token=token))
    else:
        got = open_once(url, cookies={"kubescaler_token": token})
    assert got.status == status, got.body
    assert words in got.body["error"]
    assert token not in json.dumps(got.body)
    assert commands(pair) == 0


@pytest.mark.parametrize("form", ["header", "query", "cookie"])
def test_the_users_own_token_streams_in_every_form(
    auth_stream: Service, pair: Pair, commands: Callable[[Pair], int], mint_token: Mint, form: str
) -> None:
    """The right token streams (hello first) whichever way it travels, and its acquire is the
    lock command counted for the pair (so the refusals' zero counts could have been non-zero)."""
    token = mint_token(pair.user)
    session = f"good-{form}-{uuid.uuid4().hex[:8]}"
    if form == "header":
        got = open_once(auth_stream.url + pair.path(session), headers=bearer(token))
    elif form == "query":
        got = open_once(auth_stream.url + pair.path(session, access_token=token))
    else:
        got = open_once(auth_stream.url + pair.path(session), cookies={"kubescaler_token": token})
    assert (got.status, got.event) == (200, "hello"), got.body
    assert commands(pair) >= 1


def test_an_admins_token_does_not_stream_for_a_user(
    auth_stream: Service, pair: Pair, commands: Callable[[Pair], int], mint_token: Mint
) -> None:
    """The admin role reads any /login but never takes a user's stream: 403."""
    got = open_once(
        auth_stream.url + pair.path("admin-try-1"), headers=bearer(mint_token(ADMIN, admin=True))
    )
    assert got.status == 403
    assert commands(pair) == 0


def test_the_session_limit_gives_429_then_recovers(
    auth_stream: Service, pair: Pair, commands: Callable[[Pair], int], mint_token: Mint
) -> None:
    """3 opens per 3 s per session: the 4th is 429 with Retry-After and publishes nothing;
    after that wait the session streams again; another session is not held to this budget."""
    token = bearer(mint_token(pair.user))
    session = f"limited-{uuid.uuid4().hex[:8]}"
    url = auth_stream.url + pair.path(session)
    for _ in range(3):
        assert open_once(url, headers=token).event == "hello"
    before = commands(pair)
    refused = open_once(url, headers=token)
    assert refused.status == 429, refused.body
    assert refused.body["limit"] == "session"
    assert "at most 3 per 3 s" in refused.body["error"]
    wait = int(refused.headers["retry-after"])
    assert 1 <= wait <= 3
    assert refused.body["retry_after_s"] == wait
    assert commands(pair) == before
    other = open_once(auth_stream.url + pair.path(f"other-{uuid.uuid4().hex[:8]}"), headers=token)
    assert other.status != 429
    time.sleep(wait)
    assert open_once(url, headers=token).event == "hello"


async def test_the_address_limit_counts_the_client_behind_the_proxy(
    auth_stream: Service, auth_gateway: Nginx, pair: Pair, mint_token: Mint
) -> None:
    """40 opens per 3 s per client address (X-Forwarded-For, one trusted hop): of 50 at once
    from one address, 40 pass (and about one more per 75 ms they take) and the rest are 429;
    another address is not held to it, and a client's own X-Forwarded-For sent through the
    entry point does not choose its address."""
    token = mint_token(pair.user)
    bad_profile = f"/stream/{pair.user}/not-a-uuid"  # counted, then refused cheaply (400)

    async with httpx.AsyncClient(base_url=auth_stream.url, timeout=10) as client:

        async def from_address(address: str) -> httpx.Response:
            headers = {**bearer(token), "X-Forwarded-For": address}
            return await client.get(bad_profile, headers=headers)

        started = time.monotonic()
        burst = await asyncio.gather(*(from_address("203.0.113.7") for _ in range(50)))
        took = time.monotonic() - started
        statuses = [r.status_code for r in burst]
        assert set(statuses) == {400, 429}, statuses
        assert 40 <= statuses.count(400) <= 40 + took / 0.075 + 1
        refused = next(r for r in burst if r.status_code == 429)
        assert refused.json()["limit"] == "address"
        assert int(refused.headers["retry-after"]) >= 1
        assert (await from_address("203.0.113.8")).status_code == 400
        forged = await client.get(
            auth_gateway.url + bad_profile,
            headers={**bearer(token), "X-Forwarded-For": "203.0.113.7"},
        )
    assert forged.status_code == 400, forged.text  # counted as 127.0.0.1, not as .7


def test_the_stream_page_is_the_users_own(
    auth_stream: Service, pair: Pair, mint_token: Mint
) -> None:
    """/index needs the user's token (query or cookie); another user's is 403; the page tells
    browsers not to send its URL (and so its token) on as a Referer."""
    page = auth_stream.url + f"/index/{pair.user}/{pair.profile}"
    assert httpx.get(page).status_code == 401
    assert (
        httpx.get(page, params={"access_token": mint_token(str(uuid.uuid4()))}).status_code == 403
    )
    own = httpx.get(page, params={"access_token": mint_token(pair.user)})
    assert own.status_code in (200, 503), own.text  # 503: the web client is not built here
    assert (
        httpx.get(page, cookies={"kubescaler_token": mint_token(pair.user)}).status_code
        == own.status_code
    )
    if own.status_code == 200:
        assert own.headers["referrer-policy"] == "no-referrer"


def test_main_lists_need_a_token_login_the_users_own(
    auth_gateway: Nginx, pair: Pair, mint_token: Mint
) -> None:
    """Lists: 401 without a token, 200 with any user's; /login: the user's own or an admin's
    token, another user's is 403."""
    main = auth_gateway.url + "/main"
    anyone = bearer(mint_token(str(uuid.uuid4())))
    for path in ("/users", "/profiles", "/suggested"):
        assert httpx.get(main + path).status_code == 401
        assert httpx.get(main + path, headers=anyone).status_code == 200
    login = f"{main}/login/{pair.user}"
    assert httpx.get(login).status_code == 401
    assert httpx.get(login, headers=anyone).status_code == 403
    assert httpx.get(login, headers=bearer(mint_token(pair.user))).status_code == 200
    assert httpx.get(login, headers=bearer(mint_token(ADMIN, admin=True))).status_code == 200
    cookie = httpx.get(login, cookies={"kubescaler_token": mint_token(pair.user)})
    assert cookie.status_code == 200


def test_mutations_need_the_admin_role_or_token_in_the_header(
    auth_gateway: Nginx, mint_token: Mint
) -> None:
    """Test data: no token 401; a user's token 403 (no role); the admin role or the admin token
    201; an admin token in the cookie does not count (mutations read the header only)."""
    url = auth_gateway.url + "/main/testdata"
    tiny = {"users": 2, "profiles": 1, "shared_users": 0}
    assert httpx.post(url, params=tiny).status_code == 401
    user = httpx.post(url, params=tiny, headers=bearer(mint_token(str(uuid.uuid4()))))
    assert user.status_code == 403
    assert "'admin' role" in user.json()["error"]
    assert (
        httpx.post(url, params=tiny, headers=bearer(mint_token(ADMIN, admin=True))).status_code
        == 201
    )
    assert httpx.post(url, params=tiny, headers=bearer(ADMIN_TOKEN)).status_code == 201
    in_cookie = httpx.post(
        url, params=tiny, cookies={"kubescaler_token": mint_token(ADMIN, admin=True)}
    )
    assert in_cookie.status_code == 401


def test_sign_in_keeps_the_token_in_an_httponly_cookie(
    auth_gateway: Nginx, pair: Pair, mint_token: Mint
) -> None:
    """POST /auth/session with a valid token sets it as an HttpOnly, SameSite=Lax cookie for its
    lifetime; GET says who you are; DELETE forgets it; a bad token sets nothing."""
    with httpx.Client(base_url=auth_gateway.url) as browser:
        assert browser.get("/auth/session").status_code == 401
        expired = jwt.encode(claims(pair.user, exp=int(time.time()) - 120), SECRET)
        refused = browser.post("/auth/session", headers=bearer(expired))
        assert refused.status_code == 401
        assert "set-cookie" not in refused.headers
        r = browser.post("/auth/session", headers=bearer(mint_token(pair.user, ttl_s=600)))
        assert r.status_code == 200, r.text
        assert r.json()["subject"] == pair.user
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=lax" in cookie
        assert "path=/" in cookie
        assert 590 <= int(cookie.split("max-age=")[1].split(";")[0]) <= 600
        who = browser.get("/auth/session").json()
        assert (who["auth"], who["subject"], who["admin"]) == (True, pair.user, False)
        assert browser.get(f"/main/login/{pair.user}").status_code == 200
        assert browser.delete("/auth/session").status_code == 204
        assert browser.get("/auth/session").status_code == 401


def test_no_token_is_ever_written_to_a_log(
    auth_gateway: Nginx,
    auth_stream: Service,
    auth_main: Service,
    pair: Pair,
    mint_token: Mint,
    test_state: Path,
) -> None:
    """Tokens sent in the query, the cookie and the header, accepted and refused, through the
    entry point: the access log records the requests, and no log holds any of the tokens."""
    good = mint_token(pair.user)
    expired = jwt.encode(claims(pair.user, exp=int(time.time()) - 120), SECRET)
    session = f"logs-{uuid.uuid4().hex[:8]}"
    gw = auth_gateway.url
    assert open_once(gw + pair.path(session, access_token=good)).event == "hello"
    assert open_once(gw + pair.path(session, access_token=expired)).status == 401
    assert open_once(gw + pair.path(session), cookies={"kubescaler_token": good}).event == "hello"
    assert httpx.get(
        f"{gw}/index/{pair.user}/{pair.profile}", params={"access_token": good}
    ).status_code in (200, 503)
    assert (
        httpx.get(f"{gw}/main/login/{pair.user}", params={"access_token": expired}).status_code
        == 401
    )
    assert httpx.get(f"{gw}/main/login/{pair.user}", headers=bearer(good)).status_code == 200
    access_log = (test_state / "nginx-auth" / "logs" / "access.log").read_text()
    assert f"/stream/{pair.user}/{pair.profile}" in access_log  # the requests were logged
    logs = {
        "nginx access": access_log,
        "nginx": (test_state / "nginx-auth" / "logs" / "nginx.log").read_text(),
        "stream": auth_stream.log.read_text(),
        "main": auth_main.log.read_text(),
    }
    assert logs["stream"], "the stream service logged nothing at debug level"
    assert logs["main"], "main logged nothing at debug level"
    for name, text in logs.items():
        for token in (good, expired):
            assert token not in text, f"a token is in the {name} log"
            assert token.split(".")[1] not in text, f"a token's claims are in the {name} log"
