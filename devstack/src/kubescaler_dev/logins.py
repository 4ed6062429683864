"""The Redis passwords of the local system and the test servers: one random password per ACL
user of :mod:`kubescaler.redis_acl`, and a local-only ``admin`` (every command and key) for
the tooling and tests that inspect or wipe a server. The manifests never have ``admin``.

``./dev up`` keeps them in ``<state>/redis-passwords/<user>`` (mode 0600, made on the first
run and kept); a test session makes its own in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from kubescaler import redis_acl
from kubescaler.adapters.tokens import new_secret, read_or_make_secret

#: The local-only superuser (never in the manifests): tests' FLUSHALL, the tooling's INFO.
ADMIN = "admin"
ADMIN_RULES = "~* &* +@all"
#: The Sentinels' own password (requirepass) is kept under this name.
SENTINELS = "sentinels"

#: The ACL user each kubescaler command logs in as (base uses no Redis).
ROLE = {"main": "main", "stream": "stream", "lock-keeper": "lock-keeper", "replay": "replay"}


def names() -> list[str]:
    """Every user of every server kind, the admin and the Sentinels' password."""
    found = {name for kind in redis_acl.USERS for name in redis_acl.users(kind)}
    return [*sorted(found), ADMIN, SENTINELS]


def fresh() -> dict[str, str]:
    """A new random password per name (a test session's)."""
    return {name: new_secret() for name in names()}


def kept(folder: Path) -> dict[str, str]:
    """The passwords kept in ``folder`` (one file per name), made on first use."""
    return {name: read_or_make_secret(folder / name) for name in names()}


def acl_file(kind: str, passwords: Mapping[str, str]) -> str:
    """:func:`kubescaler.redis_acl.acl_file` and the local admin."""
    digest = hashlib.sha256(passwords[ADMIN].encode()).hexdigest()
    return redis_acl.acl_file(kind, passwords) + f"user {ADMIN} on #{digest} {ADMIN_RULES}\n"


def login(passwords: Mapping[str, str], user: str = ADMIN) -> dict[str, str]:
    """``username``/``password`` keyword arguments (redis-py, RedisSettings) of ``user``."""
    return {"username": user, "password": passwords[user]}


def service_env(command: str, passwords: Mapping[str, str]) -> dict[str, str]:
    """The Redis credentials of ``kubescaler <command>`` (none for base), and the Sentinels'
    password."""
    role = ROLE.get(command)
    if role is None:
        return {}
    return {
        "KUBESCALER_REDIS_USERNAME": role,
        "KUBESCALER_REDIS_PASSWORD": passwords[role],
        "KUBESCALER_REDIS_SENTINEL_PASSWORD": passwords[SENTINELS],
    }
