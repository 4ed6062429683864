"""Who a verified token says the caller is, and what that caller may do. Pure.

The token itself is verified in ``adapters/tokens.py``; these rules see only its claims.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from kubescaler.domain.errors import Forbidden, Unauthorized


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    """The caller a token names: its subject (a user id), whether it is an admin, until when."""

    subject: str
    admin: bool = False
    expires_at_ms: int = 0


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The claim at ``path``; dots walk into objects (``realm_access.roles``). None if absent."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def roles(value: Any) -> set[str]:
    """Roles from a claim: a list of strings, or one space-separated string (OAuth ``scope``)."""
    if isinstance(value, str):
        return set(value.split())
    if isinstance(value, list):
        return {r for r in value if isinstance(r, str)}
    return set()


def from_claims(
    claims: Mapping[str, Any], *, subject_claim: str, roles_claim: str, admin_role: str
) -> Identity:
    """The identity in verified claims; Unauthorized when the subject claim is missing."""
    subject = claim_at(claims, subject_claim)
    if not isinstance(subject, str) or not subject:
        raise Unauthorized(f"the token has no {subject_claim!r} claim naming a user")
    exp = claims.get("exp")
    return Identity(
        subject=subject,
        admin=admin_role in roles(claim_at(claims, roles_claim)),
        expires_at_ms=int(exp * 1000) if isinstance(exp, int | float) else 0,
    )


def _same_user(subject: str, user_id: uuid.UUID) -> bool:
    try:
        return uuid.UUID(subject) == user_id
    except ValueError:
        return False


def require_user(identity: Identity, user_id: uuid.UUID, *, admin_may: bool = False) -> None:
    """Only the user itself (or, where ``admin_may``, an admin) acts for ``user_id``."""
    if _same_user(identity.subject, user_id) or (admin_may and identity.admin):
        return
    raise Forbidden(f"this token is not for user {user_id}")


def require_admin(identity: Identity, admin_role: str) -> None:
    if not identity.admin:
        raise Forbidden(f"this endpoint needs the {admin_role!r} role in the token")
