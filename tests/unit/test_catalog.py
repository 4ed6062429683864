"""base's rules (services/catalog) over the in-memory store: pages and their tokens, 404 against
503, a profile's users, deleting a user, a user's profiles. Bindings: test_catalog_bindings."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable

import pytest
from catalogfakes import FakeStore

from kubescaler.adapters.cassandra import CassandraRepository
from kubescaler.domain.errors import Conflict, DependencyUnavailable, InvalidInput, NotFound
from kubescaler.domain.models import Bulk, BulkIds, Counts, Pair, Profile, ProfileIn, User, UserIn
from kubescaler.domain.paging import encode_token
from kubescaler.services.catalog import Catalog, Store

KEY = "page-key"


def ids(n: int) -> list[uuid.UUID]:
    return sorted(uuid.uuid4() for _ in range(n))


def catalog(store: FakeStore | None = None) -> Catalog:
    return Catalog(store or FakeStore(), KEY)


def with_users(n: int) -> tuple[Catalog, FakeStore, list[uuid.UUID]]:
    made = ids(n)
    store = FakeStore(users={u: f"user-{i}" for i, u in enumerate(made)})
    return catalog(store), store, made


# -- the port --------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", [CassandraRepository, FakeStore])
def test_the_repository_and_the_fake_answer_every_store_method_alike(impl: type) -> None:
    """Both stores have each method of the port, with the port's parameters (the fake is the
    repository's stand-in, so it may not drift from it)."""
    for name, method in inspect.getmembers(Store, inspect.isfunction):
        if name.startswith("_"):
            continue
        want = list(inspect.signature(method).parameters)
        have = list(inspect.signature(getattr(impl, name)).parameters)
        assert have[: len(want)] == want, (impl.__name__, name)


# -- pages -----------------------------------------------------------------------------------


async def test_following_next_visits_every_row_once() -> None:
    """Pages hold at most ``limit`` rows; following ``next`` sees each row once, then null."""
    users, _, made = with_users(7)
    seen: list[uuid.UUID] = []
    page = await users.list_users(3, None)
    sizes = [len(page.items)]
    seen += [u.id for u in page.items]
    while page.next is not None:
        page = await users.list_users(3, page.next)
        sizes.append(len(page.items))
        seen += [u.id for u in page.items]
    assert sizes == [3, 3, 1]
    assert seen == made


async def test_a_full_last_page_is_followed_by_an_empty_one_without_next() -> None:
    """The store may hand a paging state after a full last page: the next page is empty and
    ends the list (next null), not an error."""
    users, _, _ = with_users(6)
    first = await users.list_users(3, None)
    second = await users.list_users(3, first.next)
    assert second.next is not None
    last = await users.list_users(3, second.next)
    assert (last.items, last.next) == ([], None)


async def test_an_empty_list_is_an_empty_page() -> None:
    """No rows: 200 with no items and next null, neither a 404 nor an error."""
    page = await catalog().list_profiles(500, None)
    assert (page.items, page.next) == ([], None)


@pytest.mark.parametrize("token", ["%%%", "AAAAAAAA", "not base64!", "xxx"])
async def test_a_malformed_token_is_400_and_never_reaches_the_store(token: str) -> None:
    """A token that is not one of ours is InvalidInput naming the page token; the store is not
    asked (Cassandra would drop the connection on a paging state it cannot read)."""
    store = FakeStore(users={uuid.uuid4(): "u"})
    with pytest.raises(InvalidInput, match="page token"):
        await catalog(store).list_users(1, token)
    assert store.calls == []


async def test_a_forged_token_is_400() -> None:
    """A token whose state or tag was changed does not verify: 400, store untouched."""
    users, store, _ = with_users(4)
    token = (await users.list_users(2, None)).next
    assert token is not None
    forged = token[:-4] + ("AAA=" if token[-4:] != "AAA=" else "BBB=")
    store.calls.clear()
    with pytest.raises(InvalidInput, match="page token"):
        await users.list_users(2, forged)
    assert store.calls == []


async def test_a_token_signed_with_another_key_is_400() -> None:
    """A stale token (signed before the key was changed, or by a replica with another key) is
    refused, though its paging state is one the store handed out."""
    users, store, _ = with_users(4)
    token = (await users.list_users(2, None)).next
    assert token is not None
    with pytest.raises(InvalidInput, match="not from this list"):
        await Catalog(store, "another-key").list_users(2, token)


async def test_a_token_from_another_list_is_refused() -> None:
    """A users token given to the profiles list (and the reverse) is a 400."""
    made = ids(4)
    store = FakeStore(users=dict.fromkeys(made, "u"), profiles={p: set() for p in made})
    users_next = (await catalog(store).list_users(2, None)).next
    profiles_next = (await catalog(store).list_profiles(2, None)).next
    with pytest.raises(InvalidInput, match="not from this list"):
        await catalog(store).list_profiles(2, users_next)
    with pytest.raises(InvalidInput, match="not from this list"):
        await catalog(store).list_users(2, profiles_next)


async def test_an_empty_token_is_the_first_page() -> None:
    """``?page=`` with nothing after it reads the first page."""
    users, _, made = with_users(1)
    assert [u.id for u in (await users.list_users(5, "")).items] == made


def test_the_token_format_is_the_one_base_has_always_written() -> None:
    """A token written by base before the rules moved still reads (tokens in flight survive an
    upgrade): a BLAKE2b tag over the list's name and the state, then the state, base64url."""
    state = b"\x00\x10state-bytes"
    assert encode_token(b"kubescaler-local", "users", state) == (
        "L4WnY4YEWfoFwXubpmJqWgAQc3RhdGUtYnl0ZXM="
    )


# -- 404 and 503 -----------------------------------------------------------------------------

GHOST = uuid.uuid4()

CALLS: dict[str, Callable[[Catalog], Awaitable[object]]] = {
    "get_user": lambda c: c.get_user(GHOST),
    "update_user": lambda c: c.update_user(GHOST, UserIn(name="x")),
    "delete_user": lambda c: c.delete_user(GHOST),
    "profiles_of_user": lambda c: c.profiles_of_user(GHOST),
    "get_profile": lambda c: c.get_profile(GHOST),
    "update_profile": lambda c: c.update_profile(GHOST, ProfileIn()),
    "delete_profile": lambda c: c.delete_profile(GHOST),
}


@pytest.mark.parametrize("call", list(CALLS))
async def test_an_unknown_id_is_404_naming_its_kind(call: str) -> None:
    """Every route on one id answers NotFound with the kind and the id."""
    with pytest.raises(NotFound) as caught:
        await CALLS[call](catalog())
    kind = "profile" if call.endswith("profile") else "user"
    assert caught.value.extra == {"kind": kind, "id": str(GHOST)}


EVERY_CALL: dict[str, Callable[[Catalog], Awaitable[object]]] = {
    **CALLS,
    "list_users": lambda c: c.list_users(10, None),
    "list_profiles": lambda c: c.list_profiles(10, None),
    "create_user": lambda c: c.create_user(UserIn(name="x")),
    "create_profile": lambda c: c.create_profile(ProfileIn(users=[GHOST])),
    "binding": lambda c: c.binding(GHOST, GHOST),
    "bindings": lambda c: c.bindings([Pair(user_id=GHOST, profile_id=GHOST)]),
    "insert_many": lambda c: c.insert_many(Bulk()),
    "delete_many": lambda c: c.delete_many(BulkIds()),
    "drop_all": lambda c: c.drop_all(),
}


@pytest.mark.parametrize("call", list(EVERY_CALL))
async def test_a_store_that_does_not_answer_is_503_naming_cassandra(call: str) -> None:
    """A down store is DependencyUnavailable('cassandra') on every route: never a 404, never an
    empty list."""
    with pytest.raises(DependencyUnavailable) as caught:
        await EVERY_CALL[call](catalog(FakeStore(down=True)))
    assert caught.value.dependency == "cassandra"


# -- users and profiles ----------------------------------------------------------------------


async def test_an_existing_id_is_409_and_keeps_its_row() -> None:
    """Creating a user or profile whose id exists is a Conflict naming the id; nothing changes."""
    users, store, (u,) = with_users(1)
    with pytest.raises(Conflict, match=f"user {u} already exists"):
        await users.create_user(UserIn(id=u, name="second"))
    assert store.users[u] == "user-0"
    store.profiles[u] = set()
    with pytest.raises(Conflict, match=f"profile {u} already exists"):
        await users.create_profile(ProfileIn(id=u, users=[u]))
    assert store.profiles[u] == set()


async def test_create_without_an_id_makes_one() -> None:
    """A body without ``id`` gets a new one, and the answer is the stored row."""
    made = await catalog().create_user(UserIn(name="ada"))
    assert isinstance(made.id, uuid.UUID)
    assert made.name == "ada"


async def test_a_body_id_other_than_the_path_id_is_400() -> None:
    """PUT with a body ``id`` that differs from the path's is InvalidInput; nothing written."""
    store = FakeStore()
    with pytest.raises(InvalidInput, match="differs from the path id"):
        await catalog(store).update_user(GHOST, UserIn(name="x", id=uuid.uuid4()))
    with pytest.raises(InvalidInput, match="differs from the path id"):
        await catalog(store).update_profile(GHOST, ProfileIn(id=uuid.uuid4()))
    assert store.calls == []


async def test_a_profile_keeps_each_user_once_in_order() -> None:
    """Repeated user ids are kept once, sorted."""
    users, store, (a, b) = with_users(2)
    profile = await users.create_profile(ProfileIn(users=[b, a, b]))
    assert profile.users == [a, b]
    assert store.profiles[profile.id] == {a, b}


async def test_a_profile_naming_unknown_users_is_400_listing_them_all() -> None:
    """The message names the first ten unknown users and "(and N more)"; the body lists all;
    nothing is written, on create as on update."""
    users, store, (known,) = with_users(1)
    unknown = ids(12)
    with pytest.raises(InvalidInput) as caught:
        await users.create_profile(ProfileIn(users=[known, *unknown]))
    strs = sorted(map(str, unknown))
    assert caught.value.extra == {"unknown_users": strs}
    assert caught.value.message == (
        f"profile names unknown users: {', '.join(strs[:10])} (and 2 more)"
    )
    store.profiles[GHOST] = {known}
    with pytest.raises(InvalidInput, match="and 2 more"):
        await users.update_profile(GHOST, ProfileIn(users=unknown))
    assert store.profiles == {GHOST: {known}}


async def test_a_few_unknown_users_are_all_named() -> None:
    """Ten or fewer unknown users: each in the message, no "more"."""
    unknown = ids(10)
    with pytest.raises(InvalidInput) as caught:
        await catalog().create_profile(ProfileIn(users=unknown))
    assert caught.value.message.endswith(", ".join(sorted(map(str, unknown))))


async def test_a_profile_without_users_asks_nothing_about_users() -> None:
    """An empty user set costs no existence check: one conditional write."""
    store = FakeStore()
    await catalog(store).create_profile(ProfileIn())
    assert store.calls == ["create_profile"]


async def test_deleting_a_user_unbinds_it_from_every_profile() -> None:
    """The user goes, and no profile keeps its id; other users stay bound."""
    users, store, (a, b) = with_users(2)
    p, q = ids(2)
    store.profiles = {p: {a, b}, q: {a}}
    await users.delete_user(a)
    assert store.users == {b: "user-1"}
    assert store.profiles == {p: {b}, q: set()}
    assert store.calls == ["get_user", "profiles_of_user", "delete_user"]


async def test_deleting_an_unknown_user_writes_nothing() -> None:
    """404 before any write, even when a profile still names the id (bulk data is unchecked)."""
    store = FakeStore(profiles={GHOST: {GHOST}})
    with pytest.raises(NotFound):
        await catalog(store).delete_user(GHOST)
    assert store.profiles == {GHOST: {GHOST}}
    assert "delete_user" not in store.calls


async def test_a_users_profiles_cost_one_read_when_there_are_some() -> None:
    """The cheap order: the indexed read first; existence is not asked when it found any."""
    users, store, (a,) = with_users(1)
    store.profiles = {GHOST: {a}}
    assert await users.profiles_of_user(a) == [Profile(id=GHOST, users=[a])]
    assert store.calls == ["profiles_of_user"]


async def test_a_known_user_without_profiles_is_an_empty_list() -> None:
    """[] (not 404) for a user bound to nothing; that costs a second read, existence."""
    users, store, (a,) = with_users(1)
    assert await users.profiles_of_user(a) == []
    assert store.calls == ["profiles_of_user", "get_user"]


async def test_bulk_rows_are_written_and_deleted_as_given() -> None:
    """Test data: rows go in unchecked and come out without unbinding; the counts say how many."""
    store = FakeStore()
    u, p = User(id=uuid.uuid4(), name="u"), Profile(id=uuid.uuid4(), users=[GHOST])
    assert await catalog(store).insert_many(Bulk(users=[u], profiles=[p])) == Counts(
        users=1, profiles=1
    )
    assert store.profiles == {p.id: {GHOST}}
    assert await catalog(store).delete_many(BulkIds(users=[u.id])) == Counts(users=1, profiles=0)
    assert (store.users, list(store.profiles)) == ({}, [p.id])
    await catalog(store).drop_all()
    assert store.profiles == {}
