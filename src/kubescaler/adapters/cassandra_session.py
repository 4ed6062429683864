"""The Cassandra session's life: connect, keep the schema, follow a store that moved.

The driver resolves its contact points once, when its ``Cluster`` is made, and afterwards
knows nodes only by address. A Cassandra pod that is replaced comes back at a new address; with
one node (or every node replaced at once) the driver goes on reconnecting to addresses nobody
answers on, and base stays unready until it is restarted (measured on the dev overlay: 4+
minutes, until a human restarted base). The keeper watches for exactly that: while every node
the driver knows is down, it resolves the contact points again, and when they name an address
the driver does not know, it opens a new session there and swaps it in. A node that comes back
at its old address is left to the driver's own reconnection; a node replaced while others stay
up is announced by Cassandra's topology events, which the driver follows itself.

Base logs in as its own role (``KUBESCALER_CASSANDRA_USERNAME``; ``cassandra_roles`` makes it
with SELECT and MODIFY only). A login Cassandra refuses at the start is retried for
``login_grace_s`` (the roles may still be in the making), then ``run`` raises
:class:`LoginRefused` with one line naming the store and the setting; once connected, a refusal
(a replaced node whose roles are being made again) is only retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from cassandra import AuthenticationFailed, ConsistencyLevel, Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    NoHostAvailable,
    Session,
)
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.query import PreparedStatement

from kubescaler.settings_cassandra import CassandraSettings

log = logging.getLogger(__name__)

#: Resolves contact points (names or addresses) to the set of addresses they name now.
Resolver = Callable[[Iterable[str], int], set[str]]


def resolve(hosts: Iterable[str], port: int) -> set[str]:
    """Every address the contact points resolve to now; a name that does not resolve adds none
    (a headless Service with no pod yet)."""
    found: set[str] = set()
    for host in hosts:
        with contextlib.suppress(OSError):
            for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
                found.add(str(sockaddr[0]))
    return found


def moved(resolved: set[str], known: set[str]) -> bool:
    """Whether the contact points now name an address the driver does not know."""
    return bool(resolved - known)


def refused(exc: BaseException) -> AuthenticationFailed | None:
    """The login refusal inside a failed connect, if that is why it failed."""
    errors = exc.errors.values() if isinstance(exc, NoHostAvailable) else [exc]
    return next((e for e in errors if isinstance(e, AuthenticationFailed)), None)


def where(s: CassandraSettings) -> str:
    return f"Cassandra at {','.join(s.hosts)}:{s.port}"


def refusal_line(s: CassandraSettings, exc: BaseException) -> str | None:
    """One line naming the store and the setting to check, when ``exc`` is a login that
    Cassandra refused for the credentials; None for anything else (including a refusal
    because the auth data is unavailable: too few replicas up)."""
    failed = refused(exc)
    if failed is None:
        return None
    text = str(failed)
    if "requires authentication" in text or not s.username:
        return (
            f"{where(s)} requires a login and none is set; set KUBESCALER_CASSANDRA_USERNAME "
            "and KUBESCALER_CASSANDRA_PASSWORD"
        )
    if "not permitted to log in" in text:
        return (
            f"{where(s)} refused role {s.username!r}: it may not log in; check "
            "KUBESCALER_CASSANDRA_USERNAME (`kubescaler cassandra-roles` makes the role)"
        )
    if "incorrect" in text or "Bad credentials" in text:
        return (
            f"{where(s)} refused role {s.username!r}: bad credentials; check "
            "KUBESCALER_CASSANDRA_PASSWORD"
        )
    return None


#: Every node down this long at unchanged addresses: open a new session anyway (``follow``).
STUCK_S = 5.0


class _RefusalNoise(logging.Filter):
    """Drops the driver's own reports of a refused login (a traceback each, at every retry):
    the session reports it as one line naming the setting to check."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and refused(exc) is not None:
            return False
        return "Failed to authenticate" not in record.getMessage()


for _name in ("cassandra.cluster", "cassandra.connection"):
    logging.getLogger(_name).addFilter(_RefusalNoise())


class LoginRefused(RuntimeError):
    """Cassandra kept refusing base's login for the whole grace: the message is one line
    naming the store and the setting to check."""


@dataclass(frozen=True)
class Connected:
    """One open session and the statements prepared on it."""

    cluster: Cluster
    session: Session
    statements: Mapping[str, PreparedStatement]

    def known(self) -> set[str]:
        return {str(h.endpoint.address) for h in self.cluster.metadata.all_hosts()}

    def all_down(self) -> bool:
        return not any(h.is_up for h in self.cluster.metadata.all_hosts())


class CassandraSessions:
    """Opens the session (schema, prepared statements) and replaces it when the store moved.

    ``current`` is None until the first connect succeeds; readers take it once per request,
    so a swap never changes a session under a request that already holds one.
    """

    def __init__(
        self,
        settings: CassandraSettings,
        schema: list[str],
        statements: Mapping[str, str],
        *,
        resolver: Resolver = resolve,
    ) -> None:
        self.settings = settings
        self._schema = schema
        self._cql = statements
        self._resolve = resolver
        self.current: Connected | None = None
        self.replacements = 0
        self._down_since: float | None = None
        self._last_reopen = 0.0

    async def run(self) -> None:
        """Connect (retrying: base starts before Cassandra does), then follow moves forever."""
        delay = 0.5
        start = time.monotonic()
        while self.current is None:
            try:
                await self.connect()
                log.info("connected to cassandra %s", self.settings.hosts)
            except Exception as exc:  # keep trying; /readyz reports it meanwhile
                line = refusal_line(self.settings, exc)
                if line is not None and time.monotonic() - start >= self.settings.login_grace_s:
                    raise LoginRefused(line) from None
                if line is not None:
                    log.warning(
                        "%s (retried for up to %.0f s: the roles may still be in the making)",
                        line,
                        self.settings.login_grace_s,
                    )
                else:
                    log.warning("cassandra not reachable yet: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        while True:
            await asyncio.sleep(self.settings.reresolve_interval_s)
            await self.follow()

    async def connect(self) -> None:
        """Open a session at the addresses the contact points name now."""
        addresses = await asyncio.to_thread(self._resolve, self.settings.hosts, self.settings.port)
        self.current = await asyncio.to_thread(self._open, sorted(addresses) or self.settings.hosts)

    async def follow(self) -> bool:
        """One check: when every known node is down and the contact points name a new address,
        open a session there and swap it in. True when it swapped.

        Also when they name the same addresses but every node has been down for
        ``STUCK_S``: the driver stops reconnecting to a node that refused its login (a node
        that came back empty, before its roles were made again), so a session of its own
        would stay down after the roles are back."""
        old = self.current
        if old is None or not old.all_down():
            self._down_since = None
            return False
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = self._last_reopen = now
        resolved = await asyncio.to_thread(self._resolve, self.settings.hosts, self.settings.port)
        stuck = now - self._down_since >= STUCK_S and now - self._last_reopen >= STUCK_S
        if not moved(resolved, old.known()) and not stuck:
            return False
        self._last_reopen = now
        try:
            new = await asyncio.to_thread(self._open, sorted(resolved) or self.settings.hosts)
        except Exception as exc:  # not listening yet, roles not made yet: the next check tries
            why = refusal_line(self.settings, exc) or exc
            log.warning("cassandra at %s does not answer yet: %s", sorted(resolved), why)
            return False
        self.current = new
        self.replacements += 1
        self._down_since = None
        log.warning(
            "cassandra: reconnected at %s (the driver knew %s, all down)",
            sorted(resolved),
            sorted(old.known()),
        )
        await asyncio.to_thread(old.cluster.shutdown)
        return True

    async def close(self) -> None:
        if self.current is not None:
            old, self.current = self.current, None
            await asyncio.to_thread(old.cluster.shutdown)

    def _open(self, contact_points: list[str]) -> Connected:
        s = self.settings
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
            request_timeout=s.request_timeout_s,
            consistency_level=ConsistencyLevel.name_to_value[s.consistency],
        )
        cluster = Cluster(
            contact_points=contact_points,
            port=s.port,
            connect_timeout=s.request_timeout_s,
            reconnection_policy=ExponentialReconnectionPolicy(0.5, 5.0),
            # a node that went silent (lost, partitioned) is dropped in seconds, not a minute:
            # its requests time out meanwhile, and the driver would keep choosing it
            idle_heartbeat_interval=s.heartbeat_s,
            idle_heartbeat_timeout=s.heartbeat_s,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            protocol_version=5,
            auth_provider=PlainTextAuthProvider(s.username, s.password) if s.username else None,
        )
        try:
            session = cluster.connect()
            if self._schema_missing(cluster):
                try:
                    for ddl in self._schema:
                        session.execute(ddl, timeout=max(s.request_timeout_s, 30.0))
                except Unauthorized as exc:
                    raise RuntimeError(
                        f"keyspace {s.keyspace} is incomplete and role {s.username!r} may not "
                        "create it (`kubescaler cassandra-roles` does)"
                    ) from exc
            prepared = {
                name: session.prepare(cql.format(ks=s.keyspace)) for name, cql in self._cql.items()
            }
        except Exception:
            cluster.shutdown()
            raise
        return Connected(cluster, session, prepared)

    def _schema_missing(self, cluster: Cluster) -> bool:
        """Whether the keyspace, its tables or the index are missing (base's own role may
        not run even CREATE ... IF NOT EXISTS: the DDL runs only when something is)."""
        ks = cluster.metadata.keyspaces.get(self.settings.keyspace)
        return (
            ks is None
            or not {"user", "profile"} <= set(ks.tables)
            or "profile_users_idx" not in ks.indexes
        )
