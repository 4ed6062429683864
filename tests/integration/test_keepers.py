"""The heartbeat and the takeover's scripts against a real redis-server: what each touches,
and what each refuses to touch."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
from redis.asyncio import Redis

from kubescaler.adapters import lockstate, redis_client
from kubescaler.adapters.keepers import Heartbeat, Keepers, beat_key, registry_key
from kubescaler.domain.locks import LockCommand
from kubescaler.settings import LockSettings, RedisSettings
from kubescaler_dev.redis import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = redis_client.connect(RedisSettings(url=redis_server.url, **redis_server.login()))
    yield client
    await client.aclose()


def lock_settings() -> LockSettings:
    tag = uuid.uuid4().hex[:8]
    return LockSettings(command_stream=f"k:{tag}:cmd", heartbeat_ttl_ms=300)


async def read_as(redis: Redis, lock: LockSettings, consumer: str, n: int) -> list[str]:
    """Publish ``n`` commands and read them as ``consumer``; their request ids."""
    await redis.xgroup_create(lock.command_stream, lock.command_group, id="$", mkstream=True)
    rids = []
    for i in range(n):
        cmd = LockCommand(
            action="acquire",
            user_id=uuid.uuid4(),
            profile_id=uuid.uuid4(),
            owner=f"o{i}",
            request_id=uuid.uuid4().hex,
            deadline_ms=0,
            reply_to="r",
        )
        await redis.xadd(lock.command_stream, {"__data__": msgspec.json.encode(cmd)})
        rids.append(cmd.request_id)
    await redis.xreadgroup(lock.command_group, consumer, {lock.command_stream: ">"}, count=n)
    return rids


async def test_a_heartbeat_registers_its_named_connection_and_lapses_when_it_stops(
    redis: Redis,
) -> None:
    """Renewed: registered, beating, its connection open under its name; closed: the
    connection is gone at once and the heartbeat lapses after its TTL."""
    lock = lock_settings()
    keepers = Keepers(redis, lock)
    beat = Heartbeat(redis, lock, "k 1")
    await beat.renew()
    registered = {"k 1": beat.client_id}
    assert await redis.hgetall(registry_key(lock)) == {b"k 1": str(beat.client_id).encode()}
    assert await keepers.connected(registered) == {"k 1"}
    assert await keepers.connected({"other": beat.client_id}) == set()  # same id, other name
    peers, _ = await keepers.look()
    assert [(p.name, p.registered, p.beating) for p in peers] == [("k 1", True, True)]
    await beat.close()
    assert await keepers.connected(registered) == set()
    await asyncio.sleep(0.35)
    assert await redis.exists(beat_key(lock, "k 1")) == 0


async def test_take_and_release_free_only_in_flight_claims_of_a_victim_still_dead(
    redis: Redis,
) -> None:
    """take moves the victim's entries and decodes them; release deletes in-flight claims
    (empty) but never a stored outcome, and nothing while the victim beats again."""
    lock = lock_settings()
    keepers = Keepers(redis, lock)
    rids = await read_as(redis, lock, "victim", 3)
    await redis.hset(registry_key(lock), "victim", 41)
    await redis.set(lockstate.applied_key(rids[0]), "", px=10_000)
    await redis.set(lockstate.applied_key(rids[1]), '{"stored": 1}', px=10_000)
    taken = await keepers.take("victim", "me", 10)
    assert [d.cmd.request_id for d in taken if d.cmd] == rids
    pending = await redis.xpending(lock.command_stream, lock.command_group)
    assert pending["consumers"] == [{"name": b"me", "pending": 3}]
    first = await keepers.take("me", "me", 2)  # paging through one's own list, in id order
    id_after = first[-1].receipt
    assert isinstance(id_after, bytes)
    second = await keepers.take("me", "me", 2, "(" + id_after.decode())
    assert [d.receipt for d in first + second] == [d.receipt for d in taken]
    await redis.set(beat_key(lock, "victim"), 41, px=10_000)  # it beats again
    assert await keepers.release("victim", 41, rids) == -1
    await redis.delete(beat_key(lock, "victim"))
    assert await keepers.release("victim", 40, rids) == -1  # registered anew meanwhile
    assert await keepers.release("victim", 41, rids) == 1
    assert await redis.get(lockstate.applied_key(rids[0])) is None
    assert await redis.get(lockstate.applied_key(rids[1])) == b'{"stored": 1}'


async def test_retire_removes_only_a_dead_keeper_holding_nothing(redis: Redis) -> None:
    """A victim still holding entries, or beating, stays; empty and lapsed, it goes from the
    group and the registry. A clean leave with nothing pending removes itself."""
    lock = lock_settings()
    keepers = Keepers(redis, lock)
    await read_as(redis, lock, "victim", 1)
    await redis.hset(registry_key(lock), mapping={"victim": 41, "me": 42})
    assert not await keepers.retire("victim", 41)  # one entry pending
    await keepers.take("victim", "me", 10)
    await redis.set(beat_key(lock, "victim"), 41, px=10_000)
    assert not await keepers.retire("victim", 41)  # beating
    await redis.delete(beat_key(lock, "victim"))
    assert await keepers.retire("victim", 41)
    consumers = await redis.xinfo_consumers(lock.command_stream, lock.command_group)
    assert [c["name"] for c in consumers] == [b"me"]
    assert await redis.hgetall(registry_key(lock)) == {b"me": b"42"}
    assert not await keepers.leave("me")  # it holds the entry it took
    await redis.xack(
        lock.command_stream,
        lock.command_group,
        *[
            e["message_id"]
            for e in await redis.xpending_range(
                lock.command_stream, lock.command_group, "-", "+", 9
            )
        ],
    )
    assert await keepers.leave("me")
    assert await redis.hgetall(registry_key(lock)) == {}
    assert await redis.xinfo_consumers(lock.command_stream, lock.command_group) == []
