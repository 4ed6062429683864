"""Production refuses placeholder secrets: a process started with ``KUBESCALER_ENVIRONMENT=
production`` stops at once, naming the variable, when a secret it uses is empty, a known
placeholder (the code's default, anything with ``CHANGE-ME``) or shorter than ``MIN_LENGTH``.

Each process checks only the secrets it uses (:data:`USES`): base signs page tokens and logs in
to Cassandra, main and stream check the admin token and verify HS* JWTs, main, stream and the
lock-keeper log in to Redis, and Cassandra's roles sidecar holds both Cassandra passwords.
"""

from __future__ import annotations

from collections.abc import Callable

from kubescaler.settings import Settings, SettingsError, env_name
from kubescaler.settings_cassandra import CassandraSettings

#: shorter than this is a placeholder in production (a generated secret is 32+ characters)
MIN_LENGTH = 16
PLACEHOLDER_MARK = "CHANGE-ME"


def _auth_secret(s: Settings) -> str | None:
    """The HMAC key, when HS* tokens are verified with it (an issuer's public key otherwise)."""
    hmac = s.auth.enabled and any(a.upper().startswith("HS") for a in s.auth.algorithms)
    return s.auth.secret if hmac else None


#: the secrets a setting names: variable -> (its value, or None when not in use; its default)
_SECRETS: dict[str, tuple[Callable[[Settings], str | None], str]] = {
    env_name(None, "admin_token"): (lambda s: s.admin_token, Settings().admin_token),
    env_name("cassandra", "page_token_key"): (
        lambda s: s.cassandra.page_token_key,
        CassandraSettings().page_token_key,
    ),
    env_name("auth", "secret"): (_auth_secret, ""),
    # the stores' passwords: in use only where a login is configured
    env_name("redis", "password"): (lambda s: s.redis.password if s.redis.username else None, ""),
    env_name("redis", "lock_password"): (
        lambda s: s.redis.lock_password if s.redis.lock_username else None,
        "",
    ),
    env_name("cassandra", "password"): (
        lambda s: s.cassandra.password if s.cassandra.username else None,
        "",
    ),
    env_name("cassandra", "admin_password"): (lambda s: s.cassandra.admin_password, ""),
}

_REDIS = ("KUBESCALER_REDIS_PASSWORD", "KUBESCALER_REDIS_LOCK_PASSWORD")

#: the secrets each process uses
USES: dict[str, tuple[str, ...]] = {
    "base": (
        "KUBESCALER_ADMIN_TOKEN",
        "KUBESCALER_CASSANDRA_PAGE_TOKEN_KEY",
        "KUBESCALER_CASSANDRA_PASSWORD",
    ),
    "main": ("KUBESCALER_ADMIN_TOKEN", "KUBESCALER_AUTH_SECRET", *_REDIS),
    "stream": ("KUBESCALER_ADMIN_TOKEN", "KUBESCALER_AUTH_SECRET", *_REDIS),
    "lock-keeper": _REDIS,
    "cassandra-roles": ("KUBESCALER_CASSANDRA_PASSWORD", "KUBESCALER_CASSANDRA_ADMIN_PASSWORD"),
}


def placeholder(value: str, default: str) -> str | None:
    """Why ``value`` is no production secret, or None when it may be one."""
    if not value:
        return "empty"
    if value == default:
        return "the code's default"
    if PLACEHOLDER_MARK.lower() in value.lower():
        return f"a placeholder (contains {PLACEHOLDER_MARK})"
    if len(value) < MIN_LENGTH:
        return f"too short ({len(value)} characters, at least {MIN_LENGTH})"
    return None


def check(settings: Settings, process: str) -> None:
    """Raise :class:`SettingsError` naming the first placeholder secret ``process`` uses, when
    ``settings.environment`` is production."""
    if settings.environment != "production":
        return
    for name in USES.get(process, ()):
        read, default = _SECRETS[name]
        value = read(settings)
        if value is None:
            continue
        if why := placeholder(value, default):
            raise SettingsError(
                f"{name} is {why}: KUBESCALER_ENVIRONMENT=production refuses placeholder "
                "secrets; set a generated one (docs/security.md)"
            )
