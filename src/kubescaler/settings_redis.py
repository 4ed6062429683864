"""The Redis section of the settings (``KUBESCALER_REDIS_*``): the state Redis, found by its
URL or through Redis Sentinel, and the independent Redlock masters.

A module of its own only for size; :mod:`kubescaler.settings` re-exports it and reads it from
the environment like every other section.
"""

from __future__ import annotations

from typing import Annotated

import msgspec


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class RedisSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: Annotated[
        str,
        _doc(
            "Redis for the event streams, the lock event log and the launched state (when "
            "`sentinels` is empty; with Sentinels only its database number is used)."
        ),
    ] = "redis://127.0.0.1:6379/0"
    sentinels: Annotated[
        list[str],
        _doc(
            "Redis Sentinels (host:port, comma-separated) that name the state Redis's primary, "
            "so clients follow a failover; empty = the one `url`."
        ),
    ] = msgspec.field(default_factory=list)
    sentinel_master: Annotated[
        str, _doc("The name the Sentinels monitor the state Redis's primary under.")
    ] = "kubescaler"
    username: Annotated[
        str,
        _doc(
            "This process's Redis ACL user on the state Redis (lock-keeper, stream, main or "
            "replay; docs/security.md); empty = the `default` user."
        ),
    ] = ""
    password: Annotated[
        str, _doc("Password of `username` on the state Redis (primary and replicas); empty = none.")
    ] = ""
    sentinel_password: Annotated[str, _doc("Password of the Sentinels; empty = none.")] = ""
    lock_username: Annotated[
        str, _doc("The Redis ACL user on the Redlock masters; empty = `username`.")
    ] = ""
    lock_password: Annotated[
        str, _doc("Password of `lock_username` on the Redlock masters; empty = `password`.")
    ] = ""
    lock_urls: Annotated[
        list[str],
        _doc(
            "Independent Redis masters for Redlock (comma-separated); empty means the one "
            "`url` (required with `sentinels`: a replicated master is no Redlock master)."
        ),
    ] = msgspec.field(default_factory=list)
    timeout_s: Annotated[float, _doc("Socket timeout for every Redis call, in seconds.")] = 2.0

    def __post_init__(self) -> None:
        for address in self.sentinels:
            _host_port(address)
        if self.sentinels and not self.lock_urls:
            raise ValueError(
                "KUBESCALER_REDIS_SENTINELS needs KUBESCALER_REDIS_LOCK_URLS: the Redlock "
                "masters must be independent, and a failover would hand a replica the locks"
            )

    @property
    def redlock_urls(self) -> list[str]:
        return self.lock_urls or [self.url]

    @property
    def lock_credentials(self) -> tuple[str, str]:
        """(user, password) on the Redlock masters: their own, else the state Redis's."""
        return (self.lock_username or self.username, self.lock_password or self.password)

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The Sentinels as (host, port) pairs; empty: the state Redis is ``url``."""
        return [_host_port(address) for address in self.sentinels]


def _host_port(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for an IPv6 address) as a pair; ValueError when it is not."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a Sentinel is host:port, not {address!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)
