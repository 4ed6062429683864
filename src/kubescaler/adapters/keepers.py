"""The lock-keepers' heartbeats and the takeover of a gone keeper's commands, on the stream Redis.

Keys, per command stream and group (``{stream}:{group}:...``):

- ``...:beat:{keeper}``: the keeper's heartbeat, its heartbeat connection's client id, PX the
  heartbeat TTL, renewed every interval by :class:`Heartbeat`;
- ``...:keepers``: a hash, keeper -> the client id of its heartbeat connection (kept after
  the heartbeat lapses, so a survivor can tell whether that connection is still open).

:class:`Keepers` does a survivor's I/O: one look at the group (:meth:`Keepers.look`), which
registered connections are still open (``CLIENT LIST ID``), and three scripts, each atomic:
:meth:`Keepers.take` (XPENDING of the victim, XCLAIM of its entries), :meth:`Keepers.release`
(delete the in-flight claims on them, only while the victim's heartbeat is still lapsed and its
registration unchanged) and :meth:`Keepers.retire` (delete a victim with nothing pending from
the group and the registry). What they mean is ``domain/takeover.py``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError
from redis.typing import EncodableT

from kubescaler.adapters import lockstate
from kubescaler.adapters.lockwire import deliveries
from kubescaler.domain.locks import Delivery
from kubescaler.domain.takeover import Peer
from kubescaler.settings import LockSettings


def registry_key(lock: LockSettings) -> str:
    return f"{lock.command_stream}:{lock.command_group}:keepers"


def beat_key(lock: LockSettings, keeper: str) -> str:
    return f"{lock.command_stream}:{lock.command_group}:beat:{keeper}"


def connection_name(keeper: str) -> str:
    """The client name of a keeper's heartbeat connection (CLIENT SETNAME: no spaces)."""
    return "lock-keeper:" + "".join("_" if c.isspace() else c for c in keeper)


class Heartbeat:
    """One keeper's heartbeat over a connection of its own, without retries: a renewal that
    fails drops the connection, and the next one opens another and registers its client id.

    A reply may take ``claim_idle_ms`` (the fallback claim's idle time) before the connection
    is given up: a keeper paused or starved for a second or two keeps its connection, and with
    it the right to commit the batch it holds (``domain/takeover.may_commit``); one silent for
    longer may lose its claims to the fallback claim anyway.
    """

    def __init__(self, redis: Redis, lock: LockSettings, name: str) -> None:
        self.redis = redis
        self.lock = lock
        self.name = name
        self.key = beat_key(lock, name)
        self.client_id = 0  # of the heartbeat connection; 0 while it has none
        self._registered = False  # the registry holds this connection's id
        self._conn: AbstractConnection | None = None

    async def _call(self, *args: Any) -> Any:
        assert self._conn is not None
        await self._conn.send_command(*args)
        return await self._conn.read_response(timeout=self.lock.claim_idle_ms / 1000)

    async def open(self) -> int:
        """The heartbeat connection's client id, opening one if there is none."""
        if self._conn is None or not self._conn.is_connected:
            if self._conn is None:
                pool = self.redis.connection_pool
                self._conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            else:
                await self._conn.connect()  # type: ignore[no-untyped-call]
            self.client_id, self._registered = 0, False
            await self._call("CLIENT", "SETNAME", connection_name(self.name))
            self.client_id = int(await self._call("CLIENT", "ID"))
        return self.client_id

    async def renew(self) -> None:
        """Renew the heartbeat (registering a new connection first); raises what failed."""
        try:
            client_id = await self.open()
            if not self._registered:
                await self._call("HSET", registry_key(self.lock), self.name, client_id)
                self._registered = True
            await self._call("SET", self.key, client_id, "PX", self.lock.heartbeat_ttl_ms)
        except BaseException:
            if self._conn is not None:
                await self._conn.disconnect()
            raise

    async def close(self) -> None:
        """Stop beating (the key is left to :meth:`Keepers.leave`, or to lapse)."""
        if self._conn is not None:
            await self._conn.disconnect()
            await self.redis.connection_pool.release(self._conn)
            self._conn = None


# KEYS: stream. ARGV: group, victim, taker, count, start id. The victim's pending entries from
# the start (up to count), moved to the taker: {id, {field, value, ...}} each.
_TAKE = """
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], ARGV[5], '+', ARGV[4], ARGV[2])
if not ok or #pending == 0 then return {} end
local ids = {}
for i, entry in ipairs(pending) do ids[i] = entry[1] end
return redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, unpack(ids))
"""

# KEYS: victim's heartbeat, registry, then applied keys. ARGV: victim, its dead connection's id.
# Deletes the in-flight claims (empty values) only while the victim is still as found dead;
# a stored outcome is never touched. Returns how many were deleted, or -1.
_RELEASE = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return -1
end
local n = 0
for i = 3, #KEYS do
  if redis.call('GET', KEYS[i]) == '' then redis.call('DEL', KEYS[i]); n = n + 1 end
end
return n
"""

# KEYS: stream, registry, victim's heartbeat. ARGV: group, victim, its dead connection's id.
_RETIRE = """
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[3] then
  return 0
end
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if ok and #pending > 0 then return 0 end
if ok then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
"""

# KEYS: stream, registry, own heartbeat. ARGV: group, own name.
_LEAVE = """
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if ok and #pending > 0 then return 0 end
if ok then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3])
return 1
"""


class Keepers:
    """A survivor's view of the group and its takeover scripts (module docstring)."""

    def __init__(self, redis: Redis, lock: LockSettings) -> None:
        self.redis = redis
        self.lock = lock
        self.registry = registry_key(lock)
        self._take = redis.register_script(_TAKE)
        self._release = redis.register_script(_RELEASE)
        self._retire = redis.register_script(_RETIRE)
        self._leave = redis.register_script(_LEAVE)

    async def look(self) -> tuple[list[Peer], dict[str, int]]:
        """Every consumer of the group and every registered keeper, with its pending count
        and whether its heartbeat is live; and the registered connection of each."""
        lock = self.lock
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xinfo_consumers(lock.command_stream, lock.command_group)
            pipe.hgetall(self.registry)
            consumers, registry = await pipe.execute(raise_on_error=False)
        if isinstance(consumers, ResponseError):  # no stream or group (yet): nobody to cover
            consumers = []
        elif isinstance(consumers, Exception):
            raise consumers
        pending = {_text(c["name"]): int(c["pending"]) for c in consumers}
        conns = {_text(k): int(v) for k, v in registry.items()}
        names = sorted(pending.keys() | conns.keys())
        beating = await self.redis.mget([beat_key(lock, n) for n in names]) if names else []
        peers = [
            Peer(
                name=n,
                pending=pending.get(n, 0),
                registered=n in conns,
                beating=beat is not None,
            )
            for n, beat in zip(names, beating, strict=True)
        ]
        return peers, conns

    async def connected(self, registered: Mapping[str, int]) -> set[str]:
        """Which of these keepers' registered heartbeat connections are open now (its id
        listed under its name: ids start again from 1 when Redis restarts)."""
        ids: list[EncodableT] = [*sorted(set(registered.values()))]
        if not ids:
            return set()
        listed = {(int(c["id"]), c["name"]) for c in await self.redis.client_list(client_id=ids)}
        return {k for k, i in registered.items() if (i, connection_name(k)) in listed}

    async def take(self, victim: str, taker: str, count: int, start: str = "-") -> list[Delivery]:
        """Move up to ``count`` of ``victim``'s pending commands from id ``start`` on (``(id``:
        after it) to ``taker``, decoded."""
        lock = self.lock
        args: list[str | int] = [lock.command_group, victim, taker, count, start]
        got = await self._take(keys=[lock.command_stream], args=args)
        entries = [e for e in got if e]  # an entry trimmed from the stream comes back empty
        if not entries:
            return []
        raw = {
            "message_ids": [entry_id for entry_id, _ in entries],
            "data": [_fields(flat) for _, flat in entries],
        }
        return deliveries(raw)

    async def release(self, victim: str, client_id: int, request_ids: Sequence[str]) -> int:
        """Delete the in-flight claims on these request ids while ``victim`` is still found
        dead (its heartbeat lapsed, ``client_id`` still its registration); -1 when it is not."""
        if not request_ids:
            return 0
        keys = [beat_key(self.lock, victim), self.registry]
        keys += [lockstate.applied_key(r) for r in request_ids]
        return int(await self._release(keys=keys, args=[victim, client_id]))

    async def retire(self, victim: str, client_id: int) -> bool:
        """Delete a dead ``victim`` that holds nothing from the group and the registry."""
        lock = self.lock
        keys = [lock.command_stream, self.registry, beat_key(lock, victim)]
        args: list[str | int] = [lock.command_group, victim, client_id]
        return bool(await self._retire(keys=keys, args=args))

    async def leave(self, me: str) -> bool:
        """A clean stop: out of the group and the registry, heartbeat gone, if ``me`` holds
        nothing; else its heartbeat lapses and a survivor takes what it left."""
        lock = self.lock
        keys = [lock.command_stream, self.registry, beat_key(lock, me)]
        return bool(await self._leave(keys=keys, args=[lock.command_group, me]))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fields(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}
