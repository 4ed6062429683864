"""The Cassandra repository for users and profiles: the only code that talks to Cassandra.

It is base's store (``services/catalog.Store``) and holds only statements and the moving of
bytes: what an absent row, a page token or a binding means is the catalog's rule. A list's
page travels as the driver's raw paging state; the catalog signs it into a token
(``domain/paging``), so a state reaching Cassandra is always one it handed out. The driver is
callback-based; :func:`_await` bridges its ResponseFutures into asyncio without blocking the
event loop. Every statement is prepared once per session (``cassandra_session``).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from cassandra import DriverException, RequestExecutionException
from cassandra.cluster import NoHostAvailable, ResponseFuture, ResultSet
from cassandra.query import BatchStatement

from kubescaler.adapters.cassandra_session import CassandraSessions, Connected, Resolver, resolve
from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.domain.models import Profile, User
from kubescaler.settings_cassandra import CassandraSettings

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


#: Ids per ``IN`` query (users that exist, profiles' members): large enough that 10,000 ids
#: are 100 queries, small enough that one query touches a bounded number of partitions.
IN_BATCH = 100
IN_CONCURRENCY = 8


def _unavailable(exc: Exception) -> DependencyUnavailable:
    return DependencyUnavailable("cassandra", f"{type(exc).__name__}: {exc}")


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
            raise _unavailable(exc) from exc

    async def _in(self, name: str, ids: Collection[uuid.UUID]) -> Iterable[Any]:
        """The rows of ``name`` (a ``WHERE id IN ?`` statement) for ``ids``: one query per
        IN_BATCH ids, IN_CONCURRENCY at a time."""
        ordered = sorted(set(ids))
        if not ordered:
            return ()
        if len(ordered) <= IN_BATCH:  # the usual case: one query, no tasks
            rs = await self._run(name, (ordered,), fetch_size=len(ordered))
            rows: list[Any] = rs.current_rows
            return rows
        sem = asyncio.Semaphore(IN_CONCURRENCY)

        async def fetch(batch: list[uuid.UUID]) -> list[Any]:
            async with sem:
                got = await self._run(name, (batch,), fetch_size=len(batch))
            return list[Any](got.current_rows)

        batches = [ordered[i : i + IN_BATCH] for i in range(0, len(ordered), IN_BATCH)]
        return itertools.chain.from_iterable(await asyncio.gather(*map(fetch, batches)))

    async def _batch(self, statements: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
        """A logged batch: all of it is applied or none (Cassandra's batchlog)."""
        c = self._now()
        batch = BatchStatement()
        for name, params in statements:
            batch.add(c.statements[name], params)
        try:
            await _await(c.session.execute_async(batch))
        except _DOWN as exc:
            raise _unavailable(exc) from exc

    async def _applied(self, name: str, params: Iterable[Any]) -> bool:
        """Whether a conditional write (IF [NOT] EXISTS) applied."""
        return bool((await self._run(name, params)).one()[0])

    # -- users -----------------------------------------------------------------------------

    async def users_page(self, limit: int, state: bytes | None) -> tuple[list[User], bytes | None]:
        rs = await self._run("users", (), fetch_size=limit, paging_state=state)
        return [User(id=r.id, name=r.name) for r in rs.current_rows], rs.paging_state

    async def get_user(self, user_id: uuid.UUID) -> User | None:
        row = (await self._run("user", (user_id,))).one()
        return None if row is None else User(id=row.id, name=row.name)

    async def users_exist(self, user_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        return {row.id for row in await self._in("users_in", user_ids)}

    async def create_user(self, user: User) -> bool:
        return await self._applied("user_insert_new", (user.id, user.name))

    async def update_user(self, user: User) -> bool:
        return await self._applied("user_update", (user.name, user.id))

    async def delete_user(self, user_id: uuid.UUID, unbind: Sequence[uuid.UUID]) -> None:
        """The user's row and its place in ``unbind``'s profiles, in one logged batch."""
        await self._batch(
            [("user_delete", (user_id,))] + [("profile_unbind", ({user_id}, p)) for p in unbind]
        )

    # -- profiles --------------------------------------------------------------------------

    async def profiles_page(
        self, limit: int, state: bytes | None
    ) -> tuple[list[Profile], bytes | None]:
        rs = await self._run("profiles", (), fetch_size=limit, paging_state=state)
        return [_profile(r) for r in rs.current_rows], rs.paging_state

    async def get_profile(self, profile_id: uuid.UUID) -> Profile | None:
        row = (await self._run("profile", (profile_id,))).one()
        return None if row is None else _profile(row)

    async def members(self, profile_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, set[uuid.UUID]]:
        return {row.id: set(row.users or ()) for row in await self._in("profiles_in", profile_ids)}

    async def profiles_of_user(self, user_id: uuid.UUID) -> list[Profile]:
        """Every profile bound to the user: one SAI query, read page by page."""
        found: list[Profile] = []
        state: bytes | None = None
        while True:
            rs = await self._run(
                "profiles_of_user",
                (user_id,),
                fetch_size=self.settings.page_size,
                paging_state=state,
            )
            found.extend(map(_profile, rs.current_rows))
            state = rs.paging_state
            if not state:
                return found

    async def create_profile(self, profile: Profile) -> bool:
        return await self._applied("profile_insert_new", (profile.id, set(profile.users)))

    async def update_profile(self, profile: Profile) -> bool:
        return await self._applied("profile_update", (set(profile.users), profile.id))

    async def delete_profile(self, profile_id: uuid.UUID) -> bool:
        return await self._applied("profile_delete", (profile_id,))

    # -- bulk ------------------------------------------------------------------------------

    async def insert_many(
        self, users: Sequence[User], profiles: Sequence[Profile], concurrency: int = 64
    ) -> None:
        """Plain inserts (no LWT) of fresh rows, ``concurrency`` in flight at a time."""
        sem = asyncio.Semaphore(concurrency)

        async def one(name: str, params: tuple[Any, ...]) -> None:
            async with sem:
                await self._run(name, params)

        await asyncio.gather(*(one("user_insert", (u.id, u.name)) for u in users))
        await asyncio.gather(*(one("profile_insert", (p.id, set(p.users))) for p in profiles))

    async def delete_many(
        self,
        user_ids: Sequence[uuid.UUID],
        profile_ids: Sequence[uuid.UUID],
        concurrency: int = 64,
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
