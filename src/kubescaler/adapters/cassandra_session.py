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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.query import PreparedStatement

from kubescaler.settings import CassandraSettings

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

    async def run(self) -> None:
        """Connect (retrying: base starts before Cassandra does), then follow moves forever."""
        delay = 0.5
        while self.current is None:
            try:
                await self.connect()
                log.info("connected to cassandra %s", self.settings.hosts)
            except Exception as exc:  # keep trying; /readyz reports it meanwhile
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
        open a session there and swap it in. True when it swapped."""
        old = self.current
        if old is None or not old.all_down():
            return False
        resolved = await asyncio.to_thread(self._resolve, self.settings.hosts, self.settings.port)
        if not moved(resolved, old.known()):
            return False
        try:
            new = await asyncio.to_thread(self._open, sorted(resolved))
        except Exception as exc:  # not listening yet: the next check tries again
            log.warning("cassandra moved to %s but does not answer yet: %s", sorted(resolved), exc)
            return False
        self.current = new
        self.replacements += 1
        log.warning(
            "cassandra moved: reconnected at %s (the driver knew only %s)",
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
        )
        try:
            session = cluster.connect()
            for ddl in self._schema:
                session.execute(ddl, timeout=max(s.request_timeout_s, 30.0))
            prepared = {
                name: session.prepare(cql.format(ks=s.keyspace)) for name, cql in self._cql.items()
            }
        except Exception:
            cluster.shutdown()
            raise
        return Connected(cluster, session, prepared)
