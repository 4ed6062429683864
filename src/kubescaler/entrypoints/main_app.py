"""The main service: users, profiles, suggested users, test data, and who is live (/login)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypeVar

from litestar import Litestar, Response, Router, delete, get, post
from litestar.datastructures import ResponseHeader
from litestar.params import Parameter

from kubescaler.adapters import lockstate, redis_client
from kubescaler.adapters.base_client import BaseClient
from kubescaler.domain.models import (
    TESTDATA_BOUNDS,
    Profile,
    SuggestedUser,
    TestDataRequest,
    TestDataSummary,
    User,
    parse_uuid,
)
from kubescaler.entrypoints.auth import admin_guard, login_guard, make_access, reader_guard
from kubescaler.entrypoints.error_docs import errors
from kubescaler.entrypoints.params import Limit, PageToken, UserId
from kubescaler.entrypoints.web import create_service_app
from kubescaler.services import testdata
from kubescaler.services.live import Live
from kubescaler.settings import Settings

DEFAULTS = TestDataRequest()
NEXT_PAGE = "X-Next-Page"
PAGE_ERRORS = errors(400, 401, 503)
PAGE_HEADERS = [
    ResponseHeader(
        name=NEXT_PAGE,
        description="token of the next page (for `?page=`); absent on the last page",
        documentation_only=True,
        value="",  # documents the header as a string
        required=False,
    )
]
T = TypeVar("T")


def _paged(items: list[T], nxt: str | None) -> Response[list[T]]:
    return Response(items, headers={NEXT_PAGE: nxt} if nxt else {})


@get("/users", guards=[reader_guard], responses=PAGE_ERRORS, response_headers=PAGE_HEADERS)
async def users(
    base: BaseClient, limit: Limit = 1000, page: PageToken = None
) -> Response[list[User]]:
    """A page of users; the header X-Next-Page, when present, fetches the next one."""
    got = await base.users(limit, page)
    return _paged(got.items, got.next)


@get("/profiles", guards=[reader_guard], responses=PAGE_ERRORS, response_headers=PAGE_HEADERS)
async def profiles(
    base: BaseClient, limit: Limit = 1000, page: PageToken = None
) -> Response[list[Profile]]:
    """A page of profiles with their user ids; X-Next-Page as for /users."""
    got = await base.profiles(limit, page)
    return _paged(got.items, got.next)


@get("/suggested", guards=[reader_guard], responses=errors(401, 503))
async def suggested(live: Live) -> list[SuggestedUser]:
    """Users bound to two or more profiles, computed from the data (same on every replica)."""
    return await live.suggested()


@get("/login/{user_id:str}", guards=[login_guard], responses=errors(400, 401, 403, 404, 503))
async def login(live: Live, user_id: UserId) -> list[str]:
    """The user's profiles that are live now: base's profiles filtered by the lock state."""
    ids = await live.launched(parse_uuid(user_id, "user id"))
    return [str(i) for i in ids]


def _bounded(name: str) -> Any:
    least, most = TESTDATA_BOUNDS[name]
    return Parameter(ge=least, le=most)


@post("/testdata", guards=[admin_guard], status_code=201, responses=errors(400, 401, 403, 503))
async def create_testdata(
    base: BaseClient,
    users: Annotated[int, _bounded("users")] = DEFAULTS.users,
    profiles: Annotated[int, _bounded("profiles")] = DEFAULTS.profiles,
    users_per_profile: Annotated[int, _bounded("users_per_profile")] = DEFAULTS.users_per_profile,
    shared_users: Annotated[int, _bounded("shared_users")] = DEFAULTS.shared_users,
    profiles_per_shared_user: Annotated[
        int, _bounded("profiles_per_shared_user")
    ] = DEFAULTS.profiles_per_shared_user,
) -> TestDataSummary:
    """Random users and profiles; ``shared_users`` of them are bound to several profiles."""
    req = TestDataRequest(
        users=users,
        profiles=profiles,
        users_per_profile=users_per_profile,
        shared_users=shared_users,
        profiles_per_shared_user=profiles_per_shared_user,
    )
    return await testdata.create(base, req)


@delete("/testdata", guards=[admin_guard], responses=errors(401, 403, 503))
async def drop_testdata(base: BaseClient) -> None:
    """Drop every user and profile."""
    await testdata.drop(base)


HANDLERS = [users, profiles, suggested, login, create_testdata, drop_testdata]
#: The same routes under /main as well, where the entry point passes the public path on
#: unchanged (a plain Ingress, which has no portable way to rewrite a path); only these, so
#: /main/metrics and the rest stay internal. Listed once in the OpenAPI, at the root.
PUBLIC = Router("/main", route_handlers=HANDLERS, include_in_schema=False)


def create_app(settings: Settings) -> Litestar:
    access = make_access(settings)  # the auth mode, for the guards (entrypoints/auth.py)
    base = BaseClient(settings.base, settings.admin_token)
    redis = redis_client.connect(settings.redis)

    @contextlib.asynccontextmanager
    async def clients(_: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await base.close()
            await redis.aclose()

    async def redis_ping() -> None:
        await redis.ping()

    app = create_service_app(
        "main",
        settings,
        handlers=[*HANDLERS, PUBLIC],
        checks={"base": base.ping, "redis": redis_ping},
        dependencies={
            "base": base,
            "live": Live(base, functools.partial(lockstate.launched_profiles, redis)),
        },
        lifespan=[clients],
    )
    app.state.access = access
    return app
