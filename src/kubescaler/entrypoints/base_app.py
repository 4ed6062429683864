"""The base service: users and profiles over REST, the only process that talks to Cassandra."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

from litestar import Litestar, delete, get, post, put

from kubescaler.adapters.cassandra import CassandraRepository
from kubescaler.domain.errors import Conflict, InvalidInput
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
from kubescaler.settings import Settings

log = logging.getLogger(__name__)

Repo = CassandraRepository
ADMIN = [admin_guard]
SHOWN = 10  # unknown user ids named in an error message; the body lists them all
#: What each kind of route can answer besides success (the OpenAPI lists exactly these).
LIST = errors(400, 503)
READ = errors(400, 404, 503)
CREATE = errors(400, 401, 409, 413, 415, 503)
UPDATE = errors(400, 401, 404, 413, 415, 503)
REMOVE = errors(400, 401, 404, 503)
BULK = errors(400, 401, 413, 415, 503)


async def _check_users(repo: Repo, users: list[uuid.UUID]) -> None:
    missing = sorted(map(str, set(users) - await repo.users_exist(users)))
    if missing:
        more = f" (and {len(missing) - SHOWN} more)" if len(missing) > SHOWN else ""
        raise InvalidInput(
            f"profile names unknown users: {', '.join(missing[:SHOWN])}{more}",
            unknown_users=missing,
        )


def _same_id(path_id: uuid.UUID, body_id: uuid.UUID | None) -> None:
    if body_id is not None and body_id != path_id:
        raise InvalidInput(f"body id {body_id} differs from the path id {path_id}")


# -- users -----------------------------------------------------------------------------------


@get("/users", responses=LIST)
async def list_users(repo: Repo, limit: Limit = 500, page: PageToken = None) -> UserPage:
    items, nxt = await repo.list_users(limit, page)
    return UserPage(items=items, next=nxt)


@post("/users", guards=ADMIN, responses=CREATE)
async def create_user(repo: Repo, data: UserIn) -> User:
    user = User(id=data.id or uuid.uuid4(), name=data.name)
    if not await repo.create_user(user):
        raise Conflict(f"user {user.id} already exists", id=str(user.id))
    return user


@get("/users/{user_id:str}", responses=READ)
async def get_user(repo: Repo, user_id: UserId) -> User:
    return await repo.get_user(parse_uuid(user_id, "user id"))


@put("/users/{user_id:str}", guards=ADMIN, responses=UPDATE)
async def update_user(repo: Repo, user_id: UserId, data: UserIn) -> User:
    ident = parse_uuid(user_id, "user id")
    _same_id(ident, data.id)
    user = User(id=ident, name=data.name)
    await repo.update_user(user)
    return user


@delete("/users/{user_id:str}", guards=ADMIN, responses=REMOVE)
async def delete_user(repo: Repo, user_id: UserId) -> None:
    """Delete the user and unbind it from its profiles, in one logged batch."""
    await repo.delete_user(parse_uuid(user_id, "user id"))


@get("/users/{user_id:str}/profiles", responses=READ)
async def profiles_of_user(repo: Repo, user_id: UserId) -> list[Profile]:
    """Every profile the user is bound to: one query through the SAI index."""
    ident = parse_uuid(user_id, "user id")
    profiles = [p async for p in repo.profiles_of_user(ident)]
    if not profiles:
        await repo.get_user(ident)  # 404 for an unknown user, [] for one without profiles
    return profiles


@get("/users/{user_id:str}/profiles/{profile_id:str}", responses=READ)
async def binding(repo: Repo, user_id: UserId, profile_id: ProfileId) -> Binding:
    """Whether the user is bound to the profile; 404 when either is unknown."""
    uid, pid = parse_uuid(user_id, "user id"), parse_uuid(profile_id, "profile id")
    return Binding(user_id=uid, profile_id=pid, bound=await repo.is_bound(uid, pid))


@post("/bindings", status_code=200, responses=errors(400, 413, 415, 503))
async def bindings(repo: Repo, data: BindingsQuery) -> Bindings:
    """Whether each user is bound to each profile, many pairs at once (a stream process asks
    for all its opens of one moment together). An unknown user or profile is not bound, and
    ``missing`` names which."""
    got = await repo.bindings([(p.user_id, p.profile_id) for p in data.pairs])
    return Bindings(items=got)


# -- profiles --------------------------------------------------------------------------------


@get("/profiles", responses=LIST)
async def list_profiles(repo: Repo, limit: Limit = 500, page: PageToken = None) -> ProfilePage:
    items, nxt = await repo.list_profiles(limit, page)
    return ProfilePage(items=items, next=nxt)


@post("/profiles", guards=ADMIN, responses=CREATE)
async def create_profile(repo: Repo, data: ProfileIn) -> Profile:
    profile = Profile(id=data.id or uuid.uuid4(), users=sorted(set(data.users)))
    await _check_users(repo, profile.users)
    if not await repo.create_profile(profile):
        raise Conflict(f"profile {profile.id} already exists", id=str(profile.id))
    return profile


@get("/profiles/{profile_id:str}", responses=READ)
async def get_profile(repo: Repo, profile_id: ProfileId) -> Profile:
    return await repo.get_profile(parse_uuid(profile_id, "profile id"))


@put("/profiles/{profile_id:str}", guards=ADMIN, responses=UPDATE)
async def update_profile(repo: Repo, profile_id: ProfileId, data: ProfileIn) -> Profile:
    ident = parse_uuid(profile_id, "profile id")
    _same_id(ident, data.id)
    profile = Profile(id=ident, users=sorted(set(data.users)))
    await _check_users(repo, profile.users)
    await repo.update_profile(profile)
    return profile


@delete("/profiles/{profile_id:str}", guards=ADMIN, responses=REMOVE)
async def delete_profile(repo: Repo, profile_id: ProfileId) -> None:
    await repo.delete_profile(parse_uuid(profile_id, "profile id"))


# -- bulk (test data) ------------------------------------------------------------------------


@post("/bulk", guards=ADMIN, responses=BULK)
async def bulk_insert(repo: Repo, data: Bulk) -> Counts:
    """Insert fresh users and profiles without per-row checks (main's test data)."""
    await repo.insert_many(data.users, data.profiles)
    return Counts(users=len(data.users), profiles=len(data.profiles))


@post("/bulk/delete", guards=ADMIN, status_code=200, responses=BULK)
async def bulk_delete(repo: Repo, data: BulkIds) -> Counts:
    """Delete the named rows (main undoing a test-data run that failed part-way)."""
    await repo.delete_many(data.users, data.profiles)
    return Counts(users=len(data.users), profiles=len(data.profiles))


@delete("/data", guards=ADMIN, responses=errors(401, 503))
async def drop_all(repo: Repo) -> None:
    """Drop every user and every profile."""
    await repo.drop_all()


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

    @contextlib.asynccontextmanager
    async def cassandra_session(_: Litestar) -> AsyncIterator[None]:
        """Connect in the background, retrying (base starts, not ready, before Cassandra does),
        then follow Cassandra to a new address when its pod is replaced."""
        task = asyncio.create_task(repo.run())
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
        dependencies={"repo": repo},
        lifespan=[cassandra_session],
    )
