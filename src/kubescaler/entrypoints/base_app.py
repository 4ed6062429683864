"""The base service: users and profiles over REST, the only process that talks to Cassandra."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator

from litestar import Litestar, delete, get, post, put

from kubescaler.adapters.cassandra import CassandraRepository
from kubescaler.adapters.cassandra_session import LoginRefused
from kubescaler.domain.models import (
    Binding,
    Bindings,
    BindingsQuery,
    Bulk,
    BulkIds,
    Counts,
    Profile,
    ProfileIn,
    ProfilePage,
    User,
    UserIn,
    UserPage,
    parse_uuid,
)
from kubescaler.entrypoints.error_docs import errors
from kubescaler.entrypoints.params import Limit, PageToken, ProfileId, UserId
from kubescaler.entrypoints.web import admin_guard, create_service_app
from kubescaler.services.catalog import Catalog, Store
from kubescaler.settings import Settings

#: base's exit status when Cassandra refuses its login (EX_CONFIG: a setting to fix)
EXIT_LOGIN_REFUSED = 78

ADMIN = [admin_guard]
#: What each kind of route can answer besides success (the OpenAPI lists exactly these).
LIST = errors(400, 503)
READ = errors(400, 404, 503)
CREATE = errors(400, 401, 409, 413, 415, 503)
UPDATE = errors(400, 401, 404, 413, 415, 503)
REMOVE = errors(400, 401, 404, 503)
BULK = errors(400, 401, 413, 415, 503)


# -- users -----------------------------------------------------------------------------------


@get("/users", responses=LIST)
async def list_users(catalog: Catalog, limit: Limit = 500, page: PageToken = None) -> UserPage:
    return await catalog.list_users(limit, page)


@post("/users", guards=ADMIN, responses=CREATE)
async def create_user(catalog: Catalog, data: UserIn) -> User:
    return await catalog.create_user(data)


@get("/users/{user_id:str}", responses=READ)
async def get_user(catalog: Catalog, user_id: UserId) -> User:
    return await catalog.get_user(parse_uuid(user_id, "user id"))


@put("/users/{user_id:str}", guards=ADMIN, responses=UPDATE)
async def update_user(catalog: Catalog, user_id: UserId, data: UserIn) -> User:
    return await catalog.update_user(parse_uuid(user_id, "user id"), data)


@delete("/users/{user_id:str}", guards=ADMIN, responses=REMOVE)
async def delete_user(catalog: Catalog, user_id: UserId) -> None:
    """Delete the user and unbind it from its profiles, in one logged batch."""
    await catalog.delete_user(parse_uuid(user_id, "user id"))


@get("/users/{user_id:str}/profiles", responses=READ)
async def profiles_of_user(catalog: Catalog, user_id: UserId) -> list[Profile]:
    """Every profile the user is bound to: one query through the SAI index."""
    return await catalog.profiles_of_user(parse_uuid(user_id, "user id"))


@get("/users/{user_id:str}/profiles/{profile_id:str}", responses=READ)
async def binding(catalog: Catalog, user_id: UserId, profile_id: ProfileId) -> Binding:
    """Whether the user is bound to the profile; 404 when either is unknown."""
    uid, pid = parse_uuid(user_id, "user id"), parse_uuid(profile_id, "profile id")
    return await catalog.binding(uid, pid)


@post("/bindings", status_code=200, responses=errors(400, 413, 415, 503))
async def bindings(catalog: Catalog, data: BindingsQuery) -> Bindings:
    """Whether each user is bound to each profile, many pairs at once (a stream process asks
    for all its opens of one moment together). An unknown user or profile is not bound, and
    ``missing`` names which."""
    return await catalog.bindings(data.pairs)


# -- profiles --------------------------------------------------------------------------------


@get("/profiles", responses=LIST)
async def list_profiles(
    catalog: Catalog, limit: Limit = 500, page: PageToken = None
) -> ProfilePage:
    return await catalog.list_profiles(limit, page)


@post("/profiles", guards=ADMIN, responses=CREATE)
async def create_profile(catalog: Catalog, data: ProfileIn) -> Profile:
    return await catalog.create_profile(data)


@get("/profiles/{profile_id:str}", responses=READ)
async def get_profile(catalog: Catalog, profile_id: ProfileId) -> Profile:
    return await catalog.get_profile(parse_uuid(profile_id, "profile id"))


@put("/profiles/{profile_id:str}", guards=ADMIN, responses=UPDATE)
async def update_profile(catalog: Catalog, profile_id: ProfileId, data: ProfileIn) -> Profile:
    return await catalog.update_profile(parse_uuid(profile_id, "profile id"), data)


@delete("/profiles/{profile_id:str}", guards=ADMIN, responses=REMOVE)
async def delete_profile(catalog: Catalog, profile_id: ProfileId) -> None:
    await catalog.delete_profile(parse_uuid(profile_id, "profile id"))


# -- bulk (test data) ------------------------------------------------------------------------


@post("/bulk", guards=ADMIN, responses=BULK)
async def bulk_insert(catalog: Catalog, data: Bulk) -> Counts:
    """Insert fresh users and profiles without per-row checks (main's test data)."""
    return await catalog.insert_many(data)


@post("/bulk/delete", guards=ADMIN, status_code=200, responses=BULK)
async def bulk_delete(catalog: Catalog, data: BulkIds) -> Counts:
    """Delete the named rows (main undoing a test-data run that failed part-way)."""
    return await catalog.delete_many(data)


@delete("/data", guards=ADMIN, responses=errors(401, 503))
async def drop_all(catalog: Catalog) -> None:
    """Drop every user and every profile."""
    await catalog.drop_all()


HANDLERS = [
    list_users,
    create_user,
    get_user,
    update_user,
    delete_user,
    profiles_of_user,
    binding,
    bindings,
    list_profiles,
    create_profile,
    get_profile,
    update_profile,
    delete_profile,
    bulk_insert,
    bulk_delete,
    drop_all,
]


def create_app(settings: Settings) -> Litestar:
    repo = CassandraRepository(settings.cassandra)
    store: Store = repo  # the repository is the catalog's store port (checked by mypy)

    async def keep_session() -> None:
        """The session's life; a login refused for the whole grace ends the process with one
        line naming the setting (a restart cannot fix a wrong password; nothing is open yet)."""
        try:
            await repo.run()
        except LoginRefused as exc:
            # straight to stderr: the log records go through a queue thread _exit would cut
            print(f"kubescaler base: {exc}", file=sys.stderr, flush=True)
            os._exit(EXIT_LOGIN_REFUSED)

    @contextlib.asynccontextmanager
    async def cassandra_session(_: Litestar) -> AsyncIterator[None]:
        """Connect in the background, retrying (base starts, not ready, before Cassandra does),
        then follow Cassandra to a new address when its pod is replaced."""
        task = asyncio.create_task(keep_session())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await repo.close()

    return create_service_app(
        "base",
        settings,
        handlers=HANDLERS,
        checks={"cassandra": repo.ping},
        dependencies={"catalog": Catalog(store, settings.cassandra.page_token_key)},
        lifespan=[cassandra_session],
    )
