"""The Cassandra section of the settings (``KUBESCALER_CASSANDRA_*``): where the store is, how
base reads and writes it, and the roles base and ``kubescaler cassandra-roles`` log in as.

A module of its own only for size; :mod:`kubescaler.settings` re-exports it and reads it from
the environment like every other section.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


#: The driver's consistency levels base may use (SERIAL ones are for lightweight transactions).
Consistency = Literal["ONE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"]


class CassandraSettings(msgspec.Struct, frozen=True, kw_only=True):
    hosts: Annotated[list[str], _doc("Cassandra contact points (comma-separated).")] = (
        msgspec.field(default_factory=lambda: ["127.0.0.1"])
    )
    port: Annotated[int, _doc("Cassandra native transport port.")] = 9042
    storage_port: Annotated[
        int, _doc("Storage (gossip) port of the local node `./dev up` starts.")
    ] = 7000
    keyspace: Annotated[str, _doc("Keyspace holding the user and profile tables.")] = "kubescaler"
    replication_factor: Annotated[
        int,
        _doc(
            "Replication factor of the keyspace (SimpleStrategy, when it is created) and of "
            "system_auth (NetworkTopologyStrategy in the node's data centre, set by "
            "`kubescaler cassandra-roles`)."
        ),
    ] = 1
    request_timeout_s: Annotated[float, _doc("Timeout of one CQL request, in seconds.")] = 5.0
    consistency: Annotated[
        Consistency, _doc("Consistency level of every read and write (a quorum: 1 of 1, 2 of 3).")
    ] = "LOCAL_QUORUM"
    heartbeat_s: Annotated[
        float,
        _doc(
            "A connection that has received nothing for this long is sent a heartbeat, which "
            "must answer within as long again: a node that stops answering without closing its "
            "connections (a lost machine, a partition) is dropped within about twice this, in "
            "seconds (the driver's default is 30)."
        ),
    ] = 2.0
    reresolve_interval_s: Annotated[
        float,
        _doc(
            "While every Cassandra node base knows is down, how often it resolves the contact "
            "points again to follow a replaced pod to its new address, in seconds."
        ),
    ] = 1.0
    page_size: Annotated[int, _doc("Rows fetched per page when base scans a table.")] = 1000
    page_token_key: Annotated[
        str, _doc("Key that signs page tokens; set the same secret on every base replica.")
    ] = "kubescaler-local"
    username: Annotated[
        str,
        _doc(
            "Cassandra role base logs in as (PasswordAuthenticator); empty: no login, for a "
            "Cassandra without authentication. `./dev up` sets its own (docs/kubernetes.md, "
            "Cassandra's roles)."
        ),
    ] = ""
    password: Annotated[str, _doc("Password of `username` (from a Secret on Kubernetes).")] = ""
    admin_username: Annotated[
        str,
        _doc(
            "Superuser `kubescaler cassandra-roles` creates and logs in as to make the roles, "
            "grants and schema; never given to base."
        ),
    ] = ""
    admin_password: Annotated[str, _doc("Password of `admin_username` (from a Secret).")] = ""
    login_grace_s: Annotated[
        float,
        _doc(
            "How long base retries a login Cassandra refuses before it exits naming the "
            "setting, in seconds: the roles may still be in the making at the first start."
        ),
    ] = 60.0


__all__ = ["CassandraSettings", "Consistency"]
