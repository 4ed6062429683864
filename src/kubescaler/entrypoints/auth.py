"""The HTTP face of the auth mode: where a token travels, the route guards, /auth/session.

A token travels in ``Authorization: Bearer``; on GET requests also in ``?access_token=`` or in
the HttpOnly cookie (``KUBESCALER_AUTH_COOKIE``), because a browser's EventSource and a page
navigation cannot set headers. Mutating requests read the header only, so a cookie cannot be
spent by another site's form (and the cookie is SameSite=Lax besides). No token, and nothing
of the request's query string, is ever logged: the services keep no access log, and the
refusals say what is wrong with a token without repeating it.

Guards run before Litestar reads the route's parameters and before the route itself, so a
refused caller never reaches base, the rate limiter's budget or the lock path.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.exceptions import NotFoundException
from litestar.handlers.base import BaseRouteHandler

from kubescaler.adapters import redis_client
from kubescaler.adapters.ratelimit import RateLimiter
from kubescaler.adapters.tokens import TokenVerifier
from kubescaler.domain.admission import client_address
from kubescaler.domain.errors import KubescalerError
from kubescaler.domain.identity import Identity
from kubescaler.domain.models import parse_uuid
from kubescaler.domain.stream import session_id
from kubescaler.services import stream_metrics
from kubescaler.services.access import Access, Limiter
from kubescaler.settings import Settings

Connection = ASGIConnection[Any, Any, Any, Any]
SESSION_COOKIE = "kubescaler_session"
QUERY_TOKEN = "access_token"
_SAFE = frozenset({"GET", "HEAD"})
_REFUSALS = {401: "unauthorized", 403: "forbidden", 429: "rate_limited"}


def _access(connection: Connection) -> Access:
    access: Access = connection.app.state.access
    return access


def bearer(connection: Connection) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if there is one."""
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def token(connection: Connection) -> str | None:
    """The request's token: the header; on GET also ``?access_token=``, then the cookie."""
    found = bearer(connection)
    if found or connection.scope.get("method") not in _SAFE:
        return found
    cookie = _access(connection).auth.cookie
    return connection.query_params.get(QUERY_TOKEN) or connection.cookies.get(cookie) or None


def _user(connection: Connection) -> Any:
    return parse_uuid(connection.path_params["user_id"], "user id")


def user_guard(connection: Connection, _: BaseRouteHandler) -> None:
    """Auth on: a token whose subject is the path's ``user_id`` (the stream page)."""
    _access(connection).as_user(token(connection), _user(connection))


def login_guard(connection: Connection, _: BaseRouteHandler) -> None:
    """Auth on: the path's user itself, or an admin (/login reads, never streams)."""
    _access(connection).as_user(token(connection), _user(connection), admin_may=True)


def reader_guard(connection: Connection, _: BaseRouteHandler) -> None:
    """Auth on: any valid token, unless the lists are configured public."""
    _access(connection).as_reader(token(connection))


def admin_guard(connection: Connection, _: BaseRouteHandler) -> None:
    """The admin token, or (auth on) a token with the admin role; from the header only."""
    _access(connection).as_admin(bearer(connection))


async def stream_open_guard(connection: Connection, _: BaseRouteHandler) -> None:
    """A stream open: the user's own token (auth on), then the session's and the client
    address's rate limits. Each refusal is counted by reason."""
    access = _access(connection)
    session = session_id(connection.query_params.get("session")) or session_id(
        connection.cookies.get(SESSION_COOKIE)
    )
    peer = connection.client.host if connection.client else None
    address = client_address(
        peer, connection.headers.get("x-forwarded-for"), access.limits.proxy_hops
    )
    try:
        await access.open_stream(token(connection), _user(connection), session, address)
    except KubescalerError as exc:
        if reason := _REFUSALS.get(exc.status):
            stream_metrics.REFUSED.labels(reason).inc()
        raise


def make_access(settings: Settings, limiter: Limiter | None = None) -> Access:
    """An Access for ``settings``: with a token verifier when the auth mode is on."""
    verifier = TokenVerifier(settings.auth) if settings.auth.enabled else None
    return Access(settings, verifier, limiter)


def stream_access(settings: Settings) -> Access:
    """The stream service's Access: the auth mode and a rate limiter on the stream Redis
    (connected on first use; :func:`closing` closes it)."""
    redis = redis_client.connect(settings.redis)
    return make_access(settings, RateLimiter(redis))


def closing(access: Access) -> Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan hook that closes ``access``' Redis client when the app stops."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await access.aclose()

    return lifespan


class WhoAmI(msgspec.Struct, kw_only=True):
    """Who the request's token names (``auth`` false: the auth mode is off, no token needed)."""

    auth: bool
    subject: str | None = None
    admin: bool = False
    expires_at_ms: int = 0


def _who(identity: Identity) -> WhoAmI:
    return WhoAmI(
        auth=True,
        subject=identity.subject,
        admin=identity.admin,
        expires_at_ms=identity.expires_at_ms,
    )


@get("/auth/session", sync_to_thread=False, include_in_schema=False)
def whoami(request: Request[Any, Any, Any]) -> Response[WhoAmI]:
    """Who you are: 200 with the token's subject, 401 without a valid token, auth false when
    the auth mode is off."""
    access = _access(request)
    who = _who(access.identify(token(request))) if access.enabled else WhoAmI(auth=False)
    return Response(who, headers={"Cache-Control": "no-store"})


@post("/auth/session", sync_to_thread=False, include_in_schema=False, status_code=200)
def sign_in(request: Request[Any, Any, Any]) -> Response[WhoAmI]:
    """Verify the ``Authorization: Bearer`` token and keep it in the HttpOnly cookie, for as
    long as it is valid, so the web client's pages and stream carry it."""
    access = _access(request)
    if not access.enabled:
        raise NotFoundException("auth is off here (KUBESCALER_AUTH_ENABLED=false): no token needed")
    raw = bearer(request) or ""
    identity = access.identify(raw)  # 401 for a missing or bad token
    left_s = max(0, identity.expires_at_ms // 1000 - int(time.time()))
    cookie = Cookie(
        key=access.auth.cookie,
        value=raw,
        max_age=left_s,
        path="/",
        httponly=True,
        secure=access.auth.cookie_secure,
        samesite="lax",
    )
    return Response(_who(identity), cookies=[cookie], headers={"Cache-Control": "no-store"})


@delete("/auth/session", sync_to_thread=False, include_in_schema=False)
def sign_out(request: Request[Any, Any, Any]) -> Response[None]:
    """Forget the cookie (the token itself stays valid until it expires)."""
    auth = _access(request).auth
    gone = Cookie(key=auth.cookie, value="", max_age=0, path="/", httponly=True, samesite="lax")
    return Response(None, status_code=204, cookies=[gone])


ROUTES = [whoami, sign_in, sign_out]
