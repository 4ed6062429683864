"""The Cassandra repository for users and profiles: the only code that talks to Cassandra.

The driver is callback-based; :func:`_await` bridges its ResponseFutures into asyncio without
blocking the event loop. Every statement is prepared once at start-up. List queries page with the
driver's paging state, handed to callers as an opaque URL-safe token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Literal

from cassandra import DriverException, RequestExecutionException
from cassandra.cluster import NoHostAvailable, ResponseFuture, ResultSet
from cassandra.query import BatchStatement

from kubescaler.adapters.cassandra_session import CassandraSessions, Connected, Resolver, resolve
from kubescaler.domain.errors import DependencyUnavailable, InvalidInput, NotFound
from kubescaler.domain.models import Binding, Profile, User
from kubescaler.settings import CassandraSettings

log = logging.getLogger(__name__)

#: Errors that mean "Cassandra did not answer", reported as 503 naming it.
_DOWN = (NoHostAvailable, RequestExecutionException, DriverException, OSError)


def schema(keyspace: str, replication_factor: int) -> list[str]:
    """Idempotent DDL. SAI on the set's values makes profiles-of-a-user one indexed query."""
    return [
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
        f"{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}",
        f"CREATE TABLE IF NOT EXISTS {keyspace}.user (id uuid PRIMARY KEY, name text)",
        f"CREATE TABLE IF NOT EXISTS {keyspace}.profile (id uuid PRIMARY KEY, users set<uuid>)",
        f"CREATE INDEX IF NOT EXISTS profile_users_idx ON {keyspace}.profile (values(users)) "
        "USING 'sai'",
    ]


_TAG = 16

#: Ids per ``IN`` query when checking that users exist: large enough that 10,000 ids are 100
#: queries, small enough that one query touches a bounded number of partitions.
IN_BATCH = 100
IN_CONCURRENCY = 8


def encode_token(key: bytes, query: str, paging_state: bytes | None) -> str | None:
    """An opaque page token: the driver's paging state behind a keyed tag.

    Cassandra answers a paging state it cannot read with a protocol error and the driver then
    drops the connection, so base only ever sends back paging states it handed out itself.
    """
    if not paging_state:
        return None
    tag = hashlib.blake2b(query.encode() + paging_state, key=key, digest_size=_TAG).digest()
    return base64.urlsafe_b64encode(tag + paging_state).decode()


def decode_token(key: bytes, query: str, token: str | None) -> bytes | None:
    if not token:
        return None
    bad = InvalidInput(f"page token is malformed or not from this list: {token!r}")
    try:
        raw = base64.b64decode(token.encode(), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise bad from None
    tag, state = raw[:_TAG], raw[_TAG:]
    want = hashlib.blake2b(query.encode() + state, key=key, digest_size=_TAG).digest()
    if not state or not hmac.compare_digest(tag, want):
        raise bad
    return state


async def _await(future: ResponseFuture) -> ResultSet:
    """Wait for a driver future on the event loop; its callbacks run on the driver's thread."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    def wake(*_: Any) -> None:
        loop.call_soon_threadsafe(settle)

    future.add_callbacks(wake, wake)
    await done
    return future.result()  # finished: returns or raises at once


class CassandraRepository:
    """Users and profiles in Cassandra. ``run`` connects and keeps the session; every call may
    raise DependencyUnavailable("cassandra", ...)."""

    def __init__(self, settings: CassandraSettings, *, resolver: Resolver = resolve) -> None:
        self.settings = settings
        self.sessions = CassandraSessions(
            settings,
            schema(settings.keyspace, settings.replication_factor),
            _CQL,
            resolver=resolver,
        )

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.sessions.current is not None

    async def connect(self) -> None:
        """Open the session, create the schema if missing and prepare statements."""
        await self.sessions.connect()

    async def run(self) -> None:
        """Connect, retrying, then follow the store to a new address when it moves."""
        await self.sessions.run()

    async def close(self) -> None:
        await self.sessions.close()

    async def ping(self) -> None:
        await self._run("ping", ())

    # -- plumbing --------------------------------------------------------------------------

    def _now(self) -> Connected:
        current = self.sessions.current
        if current is None:
            raise DependencyUnavailable("cassandra", "not connected yet")
        return current

    async def _run(
        self,
        name: str,
        params: Iterable[Any],
        *,
        fetch_size: int | None = None,
        paging_state: bytes | None = None,
    ) -> ResultSet:
        c = self._now()
        bound = c.statements[name].bind(tuple(params))
        if fetch_size is not None:
            bound.fetch_size = fetch_size
        try:
            return await _await(c.session.execute_async(bound, paging_state=paging_state))
        except _DOWN as exc:
            raise DependencyUnavailable("cassandra", f"{type(exc).__name__}: {exc}") from exc

    async def _page(
        self, name: str, limit: int, token: str | None, params: Iterable[Any] = ()
    ) -> tuple[list[Any], str | None]:
        key = self.settings.page_token_key.encode()
        state = decode_token(key, name, token)
        rs = await self._run(name, params, fetch_size=limit, paging_state=state)
        return list(rs.current_rows), encode_token(key, name, rs.paging_state)

    async def _batch(self, statements: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
        """A logged batch: all of it is applied or none (Cassandra's batchlog)."""
        c = self._now()
        batch = BatchStatement()
        for name, params in statements:
            batch.add(c.statements[name], params)
        try:
            await _await(c.session.execute_async(batch))
        except _DOWN as exc:
            raise DependencyUnavailable("cassandra", f"{type(exc).__name__}: {exc}") from exc

    # -- users -----------------------------------------------------------------------------

    async def list_users(self, limit: int, token: str | None) -> tuple[list[User], str | None]:
        rows, nxt = await self._page("users", limit, token)
        return [User(id=r.id, name=r.name) for r in rows], nxt

    async def get_user(self, user_id: uuid.UUID) -> User:
        row = (await self._run("user", (user_id,))).one()
        if row is None:
            raise NotFound("user", user_id)
        return User(id=row.id, name=row.name)

    async def users_exist(self, user_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Which of ``user_ids`` exist: one ``IN`` query per batch of ids, a few at a time."""
        ids = sorted(set(user_ids))
        batches = [ids[i : i + IN_BATCH] for i in range(0, len(ids), IN_BATCH)]
        sem = asyncio.Semaphore(IN_CONCURRENCY)

        async def found(batch: list[uuid.UUID]) -> list[uuid.UUID]:
            async with sem:
                rs = await self._run("users_in", (batch,), fetch_size=len(batch))
                return [row.id for row in rs.current_rows]

        return {u for rows in await asyncio.gather(*map(found, batches)) for u in rows}

    async def create_user(self, user: User) -> bool:
        """Insert unless the id exists; False when it does."""
        row = (await self._run("user_insert_new", (user.id, user.name))).one()
        return bool(row[0])

    async def update_user(self, user: User) -> None:
        row = (await self._run("user_update", (user.name, user.id))).one()
        if not row[0]:
            raise NotFound("user", user.id)

    async def delete_user(self, user_id: uuid.UUID) -> None:
        """Delete a user and unbind it from every profile, atomically (one logged batch)."""
        await self.get_user(user_id)
        profiles = [p async for p in self.profiles_of_user(user_id)]
        await self._batch(
            [("user_delete", (user_id,))]
            + [("profile_unbind", ({user_id}, p.id)) for p in profiles]
        )

    # -- profiles --------------------------------------------------------------------------

    async def list_profiles(
        self, limit: int, token: str | None
    ) -> tuple[list[Profile], str | None]:
        rows, nxt = await self._page("profiles", limit, token)
        return [_profile(r) for r in rows], nxt

    async def get_profile(self, profile_id: uuid.UUID) -> Profile:
        row = (await self._run("profile", (profile_id,))).one()
        if row is None:
            raise NotFound("profile", profile_id)
        return _profile(row)

    async def bindings(self, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> list[Binding]:
        """Whether each (user, profile) is bound: the profiles in ``IN`` batches; the users only
        for pairs their profile does not hold (a user a profile holds exists: deleting a user
        unbinds it in the same batch)."""
        wanted = sorted({p for _, p in pairs})
        batches = [wanted[i : i + IN_BATCH] for i in range(0, len(wanted), IN_BATCH)]
        sem = asyncio.Semaphore(IN_CONCURRENCY)

        async def fetch(batch: list[uuid.UUID]) -> list[Any]:
            async with sem:
                rs = await self._run("profiles_in", (batch,), fetch_size=len(batch))
                return list(rs.current_rows)

        members = {
            row.id: set(row.users or ())
            for rows in await asyncio.gather(*map(fetch, batches))
            for row in rows
        }
        outside = {u for u, p in pairs if p in members and u not in members[p]}
        known = await self.users_exist(outside) if outside else set()
        out = []
        for user, profile in pairs:
            missing: Literal["profile", "user"] | None = None
            if profile not in members:
                missing = "profile"
            elif user in outside and user not in known:
                missing = "user"
            bound = missing is None and user in members[profile]
            out.append(Binding(user_id=user, profile_id=profile, bound=bound, missing=missing))
        return out

    async def create_profile(self, profile: Profile) -> bool:
        row = (await self._run("profile_insert_new", (profile.id, set(profile.users)))).one()
        return bool(row[0])

    async def update_profile(self, profile: Profile) -> None:
        row = (await self._run("profile_update", (set(profile.users), profile.id))).one()
        if not row[0]:
            raise NotFound("profile", profile.id)

    async def delete_profile(self, profile_id: uuid.UUID) -> None:
        row = (await self._run("profile_delete", (profile_id,))).one()
        if not row[0]:
            raise NotFound("profile", profile_id)

    async def profiles_of_user(self, user_id: uuid.UUID) -> AsyncIterator[Profile]:
        """Every profile bound to the user: one SAI query, read page by page."""
        token: str | None = None
        while True:
            rows, token = await self._page(
                "profiles_of_user", self.settings.page_size, token, (user_id,)
            )
            for row in rows:
                yield _profile(row)
            if token is None:
                return

    async def is_bound(self, user_id: uuid.UUID, profile_id: uuid.UUID) -> bool:
        """Whether the user is in the profile; NotFound when the profile or user is unknown."""
        profile, _user = await asyncio.gather(self.get_profile(profile_id), self.get_user(user_id))
        return user_id in profile.users

    # -- bulk ------------------------------------------------------------------------------

    async def insert_many(
        self, users: list[User], profiles: list[Profile], concurrency: int = 64
    ) -> None:
        """Plain inserts (no LWT) of fresh rows, ``concurrency`` in flight at a time."""
        sem = asyncio.Semaphore(concurrency)

        async def one(name: str, params: tuple[Any, ...]) -> None:
            async with sem:
                await self._run(name, params)

        await asyncio.gather(*(one("user_insert", (u.id, u.name)) for u in users))
        await asyncio.gather(*(one("profile_insert", (p.id, set(p.users))) for p in profiles))

    async def delete_many(
        self, user_ids: list[uuid.UUID], profile_ids: list[uuid.UUID], concurrency: int = 64
    ) -> None:
        """Plain deletes of test rows (no unbinding: the profiles go in the same call)."""
        sem = asyncio.Semaphore(concurrency)

        async def one(name: str, ident: uuid.UUID) -> None:
            async with sem:
                await self._run(name, (ident,))

        await asyncio.gather(*(one("profile_remove", p) for p in profile_ids))
        await asyncio.gather(*(one("user_delete", u) for u in user_ids))

    async def drop_all(self) -> None:
        """Empty both tables (TRUNCATE: the schema and index stay)."""
        await self._run("truncate_profile", ())
        await self._run("truncate_user", ())


def _profile(row: Any) -> Profile:
    return Profile(id=row.id, users=sorted(row.users or ()))


_CQL = {
    "ping": "SELECT release_version FROM system.local",
    "users": "SELECT id, name FROM {ks}.user",
    "user": "SELECT id, name FROM {ks}.user WHERE id = ?",
    "users_in": "SELECT id FROM {ks}.user WHERE id IN ?",
    "user_insert": "INSERT INTO {ks}.user (id, name) VALUES (?, ?)",
    "user_insert_new": "INSERT INTO {ks}.user (id, name) VALUES (?, ?) IF NOT EXISTS",
    "user_update": "UPDATE {ks}.user SET name = ? WHERE id = ? IF EXISTS",
    "user_delete": "DELETE FROM {ks}.user WHERE id = ?",
    "profiles": "SELECT id, users FROM {ks}.profile",
    "profile": "SELECT id, users FROM {ks}.profile WHERE id = ?",
    "profiles_in": "SELECT id, users FROM {ks}.profile WHERE id IN ?",
    "profile_insert": "INSERT INTO {ks}.profile (id, users) VALUES (?, ?)",
    "profile_insert_new": "INSERT INTO {ks}.profile (id, users) VALUES (?, ?) IF NOT EXISTS",
    "profile_update": "UPDATE {ks}.profile SET users = ? WHERE id = ? IF EXISTS",
    "profile_delete": "DELETE FROM {ks}.profile WHERE id = ? IF EXISTS",
    "profile_remove": "DELETE FROM {ks}.profile WHERE id = ?",
    "profile_unbind": "UPDATE {ks}.profile SET users = users - ? WHERE id = ?",
    "profiles_of_user": "SELECT id, users FROM {ks}.profile WHERE users CONTAINS ?",
    "truncate_user": "TRUNCATE {ks}.user",
    "truncate_profile": "TRUNCATE {ks}.profile",
}
