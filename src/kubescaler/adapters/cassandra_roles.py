"""Cassandra's roles: a superuser of our own, base's role with only the grants it needs.

Cassandra runs with ``PasswordAuthenticator`` and ``CassandraAuthorizer``. A node with an
empty ``system_auth`` makes the default superuser ``cassandra``/``cassandra`` after
``superuser_setup_delay_ms``; :func:`ensure` (``kubescaler cassandra-roles``) then, as that
superuser the first time and as its own afterwards:

1. creates the admin superuser (``KUBESCALER_CASSANDRA_ADMIN_USERNAME``/``_PASSWORD``);
2. replicates ``system_auth`` like the data: ``NetworkTopologyStrategy`` with
   ``KUBESCALER_CASSANDRA_REPLICATION_FACTOR`` replicas in the node's data centre (done before
   any other role is written, so a node that joins later streams the roles with it);
3. creates the keyspace, tables and index (:func:`kubescaler.adapters.cassandra.schema`);
4. creates base's role (``KUBESCALER_CASSANDRA_USERNAME``) with SELECT and MODIFY on the
   keyspace and nothing else (MODIFY covers INSERT, UPDATE, DELETE and TRUNCATE; base may not
   CREATE, ALTER, DROP or GRANT), and only then lets it log in with its password;
5. disables ``cassandra``: LOGIN false and a random password nobody keeps.

Every step is idempotent, so it runs again on every start of a node: a node replaced by an
empty one (one replica: the roles went with it) gets them back, and a changed password in the
Secret becomes the role's password.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    NoHostAvailable,
    Session,
)
from cassandra.policies import WhiteListRoundRobinPolicy

from kubescaler.adapters.cassandra import schema
from kubescaler.adapters.cassandra_session import refusal_line, refused, where
from kubescaler.settings_cassandra import CassandraSettings

log = logging.getLogger(__name__)

DEFAULT_SUPERUSER = "cassandra"
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")


class RolesError(RuntimeError):
    """The roles cannot be made: a setting is missing or Cassandra refused the logins."""


def _need(s: CassandraSettings) -> None:
    for setting, value in [
        ("ADMIN_USERNAME", s.admin_username),
        ("ADMIN_PASSWORD", s.admin_password),
        ("USERNAME", s.username),
        ("PASSWORD", s.password),
    ]:
        if not value:
            raise RolesError(f"KUBESCALER_CASSANDRA_{setting} is empty: the roles need it")
    for setting, name in [("ADMIN_USERNAME", s.admin_username), ("USERNAME", s.username)]:
        if not _ROLE_NAME.fullmatch(name):
            raise RolesError(
                f"KUBESCALER_CASSANDRA_{setting}={name!r}: a role name is lower-case letters, "
                "digits and _ (not first a digit)"
            )
    if s.admin_username in (s.username, DEFAULT_SUPERUSER):
        raise RolesError(
            f"KUBESCALER_CASSANDRA_ADMIN_USERNAME={s.admin_username!r}: the admin needs a role "
            "of its own (not base's, not the default superuser, which is disabled)"
        )


class RoleMaker:
    """Logs in as the admin (or the default superuser on a fresh node) and makes the roles."""

    def __init__(
        self, settings: CassandraSettings, *, contact_points: list[str] | None = None
    ) -> None:
        _need(settings)
        self.settings = settings
        self.contact_points = contact_points or settings.hosts
        self.as_default = False

    def _cluster(self, user: str, password: str) -> Cluster:
        s = self.settings
        # only the nodes named: the cassandra pod's own sidecar talks to its node on 127.0.0.1
        # (the other nodes' CQL port admits base alone)
        policy = WhiteListRoundRobinPolicy(self.contact_points)
        profile = ExecutionProfile(load_balancing_policy=policy, request_timeout=30.0)
        return Cluster(
            self.contact_points,
            port=s.port,
            auth_provider=PlainTextAuthProvider(user, password),
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=s.request_timeout_s,
            control_connection_timeout=s.request_timeout_s,
            protocol_version=5,
        )

    def _connect(self, user: str, password: str) -> tuple[Cluster, Session]:
        cluster = self._cluster(user, password)
        try:
            return cluster, cluster.connect()
        except BaseException:
            cluster.shutdown()
            raise

    def login(self) -> tuple[Cluster, Session]:
        """A session as the admin; on a node without it, as the default superuser."""
        s = self.settings
        try:
            return self._connect(s.admin_username, s.admin_password)
        except NoHostAvailable as exc:
            if refused(exc) is None:
                raise
            first = exc
        try:
            got = self._connect(DEFAULT_SUPERUSER, DEFAULT_SUPERUSER)
        except NoHostAvailable as exc:
            if refused(exc) is None:
                raise
            raise RolesError(
                f"{where(s)} refused admin role {s.admin_username!r} ({refused(first)}) and the "
                "default superuser (a fresh node makes it after superuser_setup_delay_ms): "
                "check KUBESCALER_CASSANDRA_ADMIN_PASSWORD"
            ) from exc
        self.as_default = True
        return got

    def ensure(self) -> None:
        """Every step of the module's list, each idempotent."""
        s = self.settings
        cluster, session = self.login()
        try:
            if self.as_default:
                # a password is changed only when it must be: Cassandra 5 refuses a second
                # change of one role's password within 5 s
                verb = "ALTER" if self._exists(session, s.admin_username) else "CREATE"
                session.execute(
                    f"{verb} ROLE {s.admin_username} "
                    "WITH SUPERUSER = true AND LOGIN = true AND PASSWORD = %s",
                    (s.admin_password,),
                )
                cluster.shutdown()
                cluster, session = self._connect(s.admin_username, s.admin_password)
                log.info("made the admin superuser %r", s.admin_username)
            self._as_admin(session)
        finally:
            cluster.shutdown()

    def _as_admin(self, session: Session) -> None:
        s = self.settings
        dc = session.execute("SELECT data_center FROM system.local").one().data_center
        session.execute(
            "ALTER KEYSPACE system_auth WITH replication = "
            f"{{'class': 'NetworkTopologyStrategy', '{dc}': {s.replication_factor}}}"
        )
        for ddl in schema(s.keyspace, s.replication_factor):
            session.execute(ddl, timeout=60.0)
        # granted before it may log in: base never sees its role without its grants
        session.execute(f"CREATE ROLE IF NOT EXISTS {s.username} WITH LOGIN = false")
        held = session.execute(
            "SELECT permissions FROM system_auth.role_permissions "
            "WHERE role = %s AND resource = %s",
            (s.username, f"data/{s.keyspace}"),
        ).one()
        for permission in {"SELECT", "MODIFY"} - set(held.permissions if held else ()):
            session.execute(f"GRANT {permission} ON KEYSPACE {s.keyspace} TO {s.username}")
        if not self._logs_in(session, s.username, s.password):  # new, or a rotated password
            session.execute(
                f"ALTER ROLE {s.username} WITH LOGIN = true AND PASSWORD = %s", (s.password,)
            )
            log.info("set the password of role %r", s.username)
        if self._logs_in(session, DEFAULT_SUPERUSER, None):
            session.execute(
                f"ALTER ROLE {DEFAULT_SUPERUSER} WITH LOGIN = false AND PASSWORD = %s",
                (secrets.token_urlsafe(32),),
            )
            log.info("disabled the default superuser %r", DEFAULT_SUPERUSER)

    @staticmethod
    def _exists(session: Session, role: str) -> bool:
        found = session.execute("SELECT role FROM system_auth.roles WHERE role = %s", (role,))
        return found.one() is not None

    def _logs_in(self, session: Session, role: str, password: str | None) -> bool:
        """Whether ``role`` may log in (and, with ``password``, does log in with it)."""
        row = session.execute(
            "SELECT can_login FROM system_auth.roles WHERE role = %s", (role,)
        ).one()
        if row is None or not row.can_login:
            return False
        if password is None:
            return True
        try:
            self._connect(role, password)[0].shutdown()
        except NoHostAvailable as exc:
            if refused(exc) is None:
                raise
            return False
        return True


def ensure(settings: CassandraSettings, *, contact_points: list[str] | None = None) -> None:
    """Make the roles, grants and schema once (raises on any failure)."""
    RoleMaker(settings, contact_points=contact_points).ensure()


def ensure_until(
    settings: CassandraSettings,
    timeout_s: float,
    *,
    contact_points: list[str] | None = None,
    say: Callable[[str], Any] = log.info,
) -> float:
    """:func:`ensure`, retried each second until it succeeds or ``timeout_s`` passed (a fresh
    node takes ``superuser_setup_delay_ms`` to make the default superuser). Returns the
    seconds it took; raises the last failure after the timeout."""
    _need(settings)  # a missing setting is not worth a retry
    start = time.monotonic()
    last = ""
    while True:
        try:
            ensure(settings, contact_points=contact_points)
            return time.monotonic() - start
        except RolesError as exc:
            if time.monotonic() - start >= timeout_s:
                raise
            failure = str(exc)
        except Exception as exc:  # not listening yet, auth data not replicated yet, ...
            if time.monotonic() - start >= timeout_s:
                raise RolesError(f"{where(settings)}: {type(exc).__name__}: {exc}") from exc
            failure = f"{type(exc).__name__}: {exc}"
        if failure != last:
            say(f"cassandra roles not made yet, retrying: {failure}")
            last = failure
        time.sleep(1.0)


__all__ = ["RoleMaker", "RolesError", "ensure", "ensure_until", "refusal_line"]
