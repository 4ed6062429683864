"""The identity rules (domain/identity) and the stream-open admission rules (domain/admission)."""

from __future__ import annotations

import uuid

import pytest

from kubescaler.domain.admission import client_address, open_limits
from kubescaler.domain.errors import Forbidden, Unauthorized
from kubescaler.domain.identity import (
    Identity,
    claim_at,
    from_claims,
    require_admin,
    require_user,
    roles,
)

USER = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")
NAMES = {"subject_claim": "sub", "roles_claim": "roles", "admin_role": "admin"}


def test_claims_give_subject_admin_and_expiry() -> None:
    """sub names the user, the admin role in `roles` makes an admin, exp becomes ms."""
    who = from_claims({"sub": str(USER), "roles": ["reader", "admin"], "exp": 1700}, **NAMES)
    assert who == Identity(subject=str(USER), admin=True, expires_at_ms=1_700_000)
    assert not from_claims({"sub": "u", "roles": ["reader"]}, **NAMES).admin


def test_roles_may_sit_deep_or_be_a_scope_string() -> None:
    """Dotted claim paths walk objects (Keycloak's realm_access.roles); strings split on spaces."""
    claims = {"sub": "u", "realm_access": {"roles": ["admin"]}, "scope": "read admin"}
    assert claim_at(claims, "realm_access.roles") == ["admin"]
    assert claim_at(claims, "realm_access.missing.deeper") is None
    assert from_claims(
        claims, subject_claim="sub", roles_claim="realm_access.roles", admin_role="admin"
    ).admin
    assert from_claims(claims, subject_claim="sub", roles_claim="scope", admin_role="admin").admin
    assert roles(42) == set()
    assert roles(["a", 1, "b"]) == {"a", "b"}


@pytest.mark.parametrize("claims", [{}, {"sub": ""}, {"sub": 7}])
def test_a_token_without_a_subject_is_unauthorized(claims: dict[str, object]) -> None:
    """No usable subject claim: 401 naming the claim."""
    with pytest.raises(Unauthorized, match="'sub'"):
        from_claims(claims, **NAMES)


def test_only_the_user_itself_acts_for_it() -> None:
    """Same UUID (any case) passes; another user or a non-UUID subject is 403; admins only where
    allowed."""
    require_user(Identity(subject=str(USER).upper()), USER)
    other = Identity(subject=str(uuid.uuid4()))
    with pytest.raises(Forbidden, match=str(USER)):
        require_user(other, USER)
    with pytest.raises(Forbidden):
        require_user(Identity(subject="alice"), USER)
    admin = Identity(subject="ops", admin=True)
    with pytest.raises(Forbidden):
        require_user(admin, USER)
    require_user(admin, USER, admin_may=True)


def test_admin_needs_the_role() -> None:
    """Without the admin role the refusal names the role."""
    require_admin(Identity(subject="ops", admin=True), "admin")
    with pytest.raises(Forbidden, match="'admin' role"):
        require_admin(Identity(subject="u"), "admin")


def test_client_address_trusts_only_the_configured_proxies() -> None:
    """With N trusted hops the N-th entry from the right counts; what the client wrote to the
    left of it does not; without hops (or a header) the peer counts."""
    assert client_address("10.0.0.9", "1.2.3.4, 10.0.0.1", 0) == "10.0.0.9"
    assert client_address("10.0.0.9", "6.6.6.6, 1.2.3.4", 1) == "1.2.3.4"
    assert client_address("10.0.0.9", "6.6.6.6, 1.2.3.4, 10.0.0.1", 2) == "1.2.3.4"
    assert client_address("10.0.0.9", "1.2.3.4", 3) == "1.2.3.4"
    assert client_address("10.0.0.9", None, 1) == "10.0.0.9"
    assert client_address("10.0.0.9", "not-an-ip", 1) == "10.0.0.9"
    assert client_address(None, None, 0) == "unknown"
    assert client_address("p", "2001:DB8::1", 1) == "2001:db8::1"


def test_open_limits_scope_sessions_by_subject_and_skip_zero() -> None:
    """A session's key includes the token's subject; a count of 0 or no session adds no limit."""
    both = open_limits(
        session="s" * 8,
        subject="u1",
        address="1.2.3.4",
        per_session=3,
        per_address=10,
        window_s=2.5,
    )
    assert [(lim.what, lim.count, lim.period_ms) for lim in both] == [
        ("session", 3, 2500),
        ("address", 10, 2500),
    ]
    assert "u1/ssssssss" in both[0].key
    assert "1.2.3.4" in both[1].key
    anonymous = open_limits(
        session="s" * 8, subject=None, address="a", per_session=3, per_address=0, window_s=1
    )
    assert [lim.what for lim in anonymous] == ["session"]
    assert anonymous[0].key != both[0].key
    assert (
        open_limits(
            session=None, subject=None, address="a", per_session=3, per_address=0, window_s=1
        )
        == []
    )
