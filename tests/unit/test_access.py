"""Who may call what (services/access): the auth mode's decisions and the stream-open limits,
over a fake verifier and a fake limiter (the real ones: test_tokens, integration/test_ratelimit)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import msgspec
import pytest

from kubescaler.adapters.tokens import mint
from kubescaler.domain.admission import Limit
from kubescaler.domain.errors import Forbidden, TooManyRequests, Unauthorized
from kubescaler.domain.identity import Identity
from kubescaler.entrypoints.auth import make_access
from kubescaler.services.access import Access
from kubescaler.settings import AuthSettings, LimitSettings, Settings

SECRET = "k" * 40
USER = uuid.uuid4()
ON = Settings(auth=AuthSettings(enabled=True, secret=SECRET))


def token(user: uuid.UUID | str = USER, *, admin: bool = False) -> str:
    """A token the fake verifier reads back as ``user`` (an admin with ``admin``)."""
    return f"{'admin' if admin else 'user'}:{user}"


class FakeVerifier:
    """Reads the tokens :func:`token` writes; anything else is Unauthorized, as a token that
    does not verify is."""

    def identity(self, raw: str) -> Identity:
        role, _, subject = raw.partition(":")
        if role not in ("user", "admin") or not subject:
            raise Unauthorized("the token is malformed")
        return Identity(subject=subject, admin=role == "admin")


class FakeLimiter:
    """Refuses with ``refuse`` (a limit index and a wait), recording what it was asked."""

    def __init__(self, refuse: tuple[int, int] | None = None) -> None:
        self.refuse = refuse
        self.asked: list[list[Limit]] = []

    async def take(self, limits: Sequence[Limit]) -> tuple[Limit, int] | None:
        self.asked.append(list(limits))
        if self.refuse is None:
            return None
        index, wait_ms = self.refuse
        return limits[index], wait_ms

    async def aclose(self) -> None:
        return None


def access(settings: Settings = ON, limiter: FakeLimiter | None = None) -> Access:
    """Access as the entrypoints make it, with the fakes: a verifier only with auth on."""
    return Access(settings, FakeVerifier() if settings.auth.enabled else None, limiter)


def test_the_entrypoints_plug_in_the_real_verifier_only_with_auth_on() -> None:
    """make_access: auth off has no verifier (open mode); auth on verifies real JWTs."""
    assert not make_access(Settings()).enabled
    on = make_access(ON)
    assert on.as_user(mint(ON.auth, SECRET, str(USER)), USER) is not None
    with pytest.raises(Unauthorized):
        on.as_user("not-a-jwt", USER)


def test_auth_off_lets_everyone_read_and_stream() -> None:
    """The seed's open mode: no identity asked anywhere, and no admin token: mutations open."""
    off = access(Settings())
    assert off.as_user(None, USER) is None
    assert off.as_reader(None) is None
    off.as_admin(None)


def test_auth_off_keeps_the_admin_token() -> None:
    """With auth off, a set admin token still guards the mutating endpoints (401 without it)."""
    guarded = access(Settings(admin_token="adm1n"))
    guarded.as_admin("adm1n")
    with pytest.raises(Unauthorized, match="admin token"):
        guarded.as_admin("wrong")
    with pytest.raises(Unauthorized):
        guarded.as_admin(None)


def test_readers_need_a_token_unless_the_lists_are_public() -> None:
    """No token is a 401 that says how to send one; public lists need none."""
    with pytest.raises(Unauthorized, match="kubescaler token USER_ID"):
        access().as_reader(None)
    assert access().as_reader(token()) is not None
    public = msgspec.structs.replace(ON, auth=msgspec.structs.replace(ON.auth, public_lists=True))
    assert access(public).as_reader(None) is None


def test_users_act_only_for_themselves_admins_read_any_login() -> None:
    """Another user's token is 403; an admin's passes only where admin_may (/login)."""
    assert access().as_user(token(), USER) is not None
    with pytest.raises(Forbidden):
        access().as_user(token(uuid.uuid4()), USER)
    with pytest.raises(Forbidden):
        access().as_user(token("ops", admin=True), USER)
    assert access().as_user(token("ops", admin=True), USER, admin_may=True) is not None


def test_admin_endpoints_take_the_role_or_the_admin_token() -> None:
    """Auth on: a token without the role is 403, with it passes; the static token still passes."""
    both = msgspec.structs.replace(ON, admin_token="adm1n")
    with pytest.raises(Forbidden, match="'admin' role"):
        access(both).as_admin(token())
    access(both).as_admin(token(admin=True))
    access(both).as_admin("adm1n")
    with pytest.raises(Unauthorized, match="malformed"):
        access(both).as_admin("adm1n-but-not-quite")


async def test_a_refused_token_spends_no_rate_limit_budget() -> None:
    """401 and 403 come before the limiter: it is never asked."""
    limiter = FakeLimiter()
    with pytest.raises(Unauthorized):
        await access(limiter=limiter).open_stream(None, USER, "session-1", "1.2.3.4")
    with pytest.raises(Forbidden):
        await access(limiter=limiter).open_stream(token(uuid.uuid4()), USER, None, "1.2.3.4")
    assert limiter.asked == []


async def test_an_open_counts_against_the_subjects_session_and_the_address() -> None:
    """The limiter gets the session limit keyed by subject and session, and the address limit."""
    limits = LimitSettings(opens_per_session=3, opens_per_address=50, window_s=10)
    limiter = FakeLimiter()
    on = access(msgspec.structs.replace(ON, limits=limits), limiter)
    await on.open_stream(token(), USER, "session-1", "1.2.3.4")
    (asked,) = limiter.asked
    assert [(lim.what, lim.count, lim.period_ms) for lim in asked] == [
        ("session", 3, 10_000),
        ("address", 50, 10_000),
    ]
    assert asked[0].key.endswith(f"{USER}/session-1")


async def test_a_rate_limited_open_is_429_with_whole_seconds_to_wait() -> None:
    """The refusal names the limit and rounds the wait up to whole seconds (at least 1)."""
    limits = LimitSettings(opens_per_session=3, opens_per_address=50, window_s=10)
    settings = msgspec.structs.replace(ON, limits=limits)
    with pytest.raises(TooManyRequests, match="this address: at most 50 per 10 s") as caught:
        await access(settings, FakeLimiter((1, 2_300))).open_stream(token(), USER, "s-1xxxxx", "a")
    assert caught.value.retry_after_s == 3
    assert caught.value.extra == {"retry_after_s": 3, "limit": "address"}
    with pytest.raises(TooManyRequests) as short:
        await access(settings, FakeLimiter((0, 5))).open_stream(token(), USER, "s-1xxxxx", "a")
    assert short.value.retry_after_s == 1
