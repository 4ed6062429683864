"""main's reads (services/live): suggested users from every page of base's profiles, and a
user's live profiles, over a fake base and a fake launched state."""

from __future__ import annotations

import uuid

import pytest

from kubescaler.domain.errors import DependencyUnavailable, NotFound
from kubescaler.domain.models import Profile, ProfilePage
from kubescaler.services.live import PAGE, Live

USER, OTHER = uuid.UUID(int=1), uuid.UUID(int=2)


class FakeBase:
    """base's profiles, ``PAGE`` to a page (the token is the next index); ``down`` raises as
    the base client does when base does not answer."""

    def __init__(self, profiles: list[Profile], *, down: bool = False) -> None:
        self.all = profiles
        self.down = down
        self.asked: list[str | None] = []

    async def profiles(self, limit: int, page: str | None) -> ProfilePage:
        self.asked.append(page)
        start = int(page or 0)
        nxt = str(start + limit) if start + limit < len(self.all) else None
        return ProfilePage(items=self.all[start : start + limit], next=nxt)

    async def profiles_of_user(self, user_id: uuid.UUID) -> list[Profile]:
        if self.down:
            raise DependencyUnavailable("base", "ConnectError")
        if user_id not in (USER, OTHER):
            raise NotFound("user", user_id)
        return [p for p in self.all if user_id in p.users]


def profile(*users: uuid.UUID) -> Profile:
    return Profile(id=uuid.uuid4(), users=list(users))


class FakeLaunched:
    """The launched state: the live profile ids it was given; ``down`` raises as the Redis
    adapter does. ``asked`` records each user asked about."""

    def __init__(self, live: set[uuid.UUID] | None = None, *, down: bool = False) -> None:
        self.live = live or set()
        self.down = down
        self.asked: list[uuid.UUID] = []

    async def __call__(self, user_id: uuid.UUID) -> set[uuid.UUID]:
        self.asked.append(user_id)
        if self.down:
            raise DependencyUnavailable("redis", "launched profiles: ConnectionError")
        return self.live


async def test_suggested_reads_every_page_of_profiles() -> None:
    """Users bound to two or more profiles are found across pages, not only in the first."""
    shared = uuid.uuid4()
    profiles = [profile(uuid.uuid4()) for _ in range(PAGE)] + [profile(shared), profile(shared)]
    profiles[0] = profile(shared)
    base = FakeBase(profiles)
    got = await Live(base, FakeLaunched()).suggested()
    assert [s.id for s in got] == [shared]
    assert len(got[0].profiles) == 3
    assert base.asked == [None, str(PAGE)]


async def test_login_lists_the_users_profiles_that_are_live_sorted() -> None:
    """Only the user's own profiles, and of those only the live ones, in id order."""
    mine = sorted((profile(USER) for _ in range(3)), key=lambda p: p.id)
    theirs = profile(OTHER)
    live = {mine[2].id, mine[0].id, theirs.id}
    got = await Live(FakeBase([*mine, theirs]), FakeLaunched(live)).launched(USER)
    assert got == [mine[0].id, mine[2].id]


async def test_login_asks_base_first() -> None:
    """An unknown user is base's 404 and the launched state is not read for it."""
    state = FakeLaunched()
    with pytest.raises(NotFound):
        await Live(FakeBase([]), state).launched(uuid.uuid4())
    assert state.asked == []


@pytest.mark.parametrize(
    ("base_down", "state_down", "dependency"), [(True, False, "base"), (False, True, "redis")]
)
async def test_login_names_the_dependency_that_did_not_answer(
    base_down: bool, state_down: bool, dependency: str
) -> None:
    """base or the launched state down is a 503 naming it, never an empty list."""
    live = Live(FakeBase([profile(USER)], down=base_down), FakeLaunched(down=state_down))
    with pytest.raises(DependencyUnavailable) as caught:
        await live.launched(USER)
    assert caught.value.dependency == dependency
