"""Commands packed in C (hiredis) are the bytes redis-py's own packer makes, whatever the args."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from kubescaler.adapters import redis_client
from kubescaler.adapters.redis_client import PackedInC, connect, packing_in_c
from kubescaler.adapters.redlock import master_client
from kubescaler.settings import RedisSettings

COMMIT_LIKE: tuple[Any, ...] = (
    "EVALSHA",
    "a" * 40,
    60,
    *(f"kubescaler:lock:applied:{i:032x}" for i in range(60)),
    *(x for i in range(30) for x in (f'{{"request_id":"{i}","result":"granted"}}', "hold", i)),
    "x" * 9000,  # past redis-py's 6,000-byte buffer cutoff: its packer splits the output there
)
CASES: list[tuple[Any, ...]] = [
    ("SET", "k", "v"),
    ("SET", "ключ", "значение ✓"),
    ("XADD", b"stream", b"*", b"\x00\xff\r\n", b""),
    ("INCRBY", "n", -3, 2**70, 0),
    ("ZADD", "z", 0.1, "a", 1e20, "b", -3.5, "c", float("inf"), "d"),
    ("SCRIPT LOAD", "return 1"),  # two words in the first argument: sent as two
    (b"CLIENT SETINFO", b"LIB-NAME", b"redis-py"),
    ("SET", memoryview(b"view"), bytearray(b"array")),  # not hiredis's: redis-py packs these
    COMMIT_LIKE,
]


def packers(encoding: str = "utf-8") -> tuple[Connection, Connection]:
    in_c = packing_in_c_kind(Connection)(encoding=encoding)
    return in_c, Connection(encoding=encoding)


def packing_in_c_kind(kind: type[Connection]) -> type[Connection]:
    class Pool:
        connection_class: type[Connection] = kind

    pool: Any = Pool()
    return packing_in_c(pool).connection_class  # type: ignore[no-any-return]


@pytest.mark.parametrize("args", CASES, ids=lambda a: str(a[0])[:20])
def test_packed_in_c_is_byte_for_byte_what_redis_py_packs(args: tuple[Any, ...]) -> None:
    in_c, in_python = packers()
    assert b"".join(in_c.pack_command(*args)) == b"".join(in_python.pack_command(*args))


def test_hiredis_packs_what_it_can_and_redis_py_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C packer is the one used (the byte-for-byte tests above pass with either)."""
    calls: list[tuple[Any, ...]] = []
    real = redis_client.hiredis.pack_command

    def spy(args: tuple[Any, ...]) -> bytes:
        calls.append(args)
        return real(args)

    monkeypatch.setattr(redis_client.hiredis, "pack_command", spy)
    in_c, _ = packers()
    assert len(in_c.pack_command(*COMMIT_LIKE)) == 1  # redis-py's splits it in 6,000-byte chunks
    in_c.pack_command("SCRIPT LOAD", "return 1")
    in_c.pack_command("SET", memoryview(b"view"), "v")  # tried in C, refused, packed by redis-py
    assert [c[0] for c in calls] == ["EVALSHA", "SET"]


def test_a_text_encoding_other_than_utf8_is_packed_as_redis_py_packs_it() -> None:
    in_c, in_python = packers("latin-1")
    args = ("SET", "clé", "été")
    assert b"".join(in_c.pack_command(*args)) == b"".join(in_python.pack_command(*args))
    assert "é".encode("latin-1") in b"".join(in_c.pack_command(*args))


def test_a_bool_is_refused_as_redis_py_refuses_it() -> None:
    in_c, _ = packers()
    with pytest.raises(DataError):
        in_c.pack_command("SET", "k", True)


def test_pipelines_pack_each_command_in_c() -> None:
    in_c, in_python = packers()
    commands = [("SET", "a", 1), ("XADD", "s", "*", "f", "v" * 7000), ("GET", "a")]
    assert b"".join(in_c.pack_commands(commands)) == b"".join(in_python.pack_commands(commands))


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", Connection),
        ("rediss://127.0.0.1:6380/0", SSLConnection),
        ("unix:///tmp/kubescaler-none.sock", UnixDomainSocketConnection),
    ],
)
def test_every_client_packs_in_c_over_the_connection_its_url_chose(
    url: str, kind: type[Connection]
) -> None:
    for client in (connect(RedisSettings(url=url, timeout_s=1.0)), master_client(url, 0.25)):
        made = client.connection_pool.connection_class
        assert issubclass(made, PackedInC)
        assert issubclass(made, kind)


def test_packing_in_c_twice_keeps_one_class() -> None:
    once = packing_in_c_kind(Connection)
    assert packing_in_c_kind(once) is once
    assert packing_in_c_kind(Connection) is once


async def test_a_sentinel_client_packs_in_c_waits_for_connections_and_closes_its_sentinels() -> (
    None
):
    """With Sentinels the pool asks them for the primary on every new connection, packs in C,
    waits for a free connection (not "Too many connections") and closes the Sentinel clients."""
    redis = RedisSettings(
        sentinels=["127.0.0.1:1", "[::1]:2"], lock_urls=["redis://x:1/0"], url="redis://h:1/3"
    )
    client = connect(redis)
    pool = client.connection_pool
    assert isinstance(pool, redis_client.SentinelPool)
    assert isinstance(pool, redis_client.BlockingConnectionPool)
    assert issubclass(pool.connection_class, PackedInC)
    assert issubclass(pool.connection_class, redis_client.SentinelManagedConnection)
    assert pool.service_name == "kubescaler"
    assert pool.connection_kwargs["db"] == 3
    assert pool.max_connections == redis_client.POOL_CONNECTIONS
    sentinels = pool.sentinel_manager.sentinels
    hosts = [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in sentinels
    ]
    assert hosts == [("127.0.0.1", 1), ("::1", 2)]
    assert all(s.get_retry().get_retries() == 0 for s in sentinels)  # the next one instead
    await client.aclose()


async def test_a_sentinel_connection_asks_for_the_primary_before_every_connect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reconnection (redis-py retries it through _connect) dials the primary the Sentinels
    name now, not the address it had: after a failover that is the dead primary."""

    class Pool:
        is_master = True
        check_connection = False
        primary = ("10.0.0.1", 6379)

        async def get_master_address(self) -> tuple[str, int]:
            return self.primary

    dialed: list[tuple[str, int]] = []

    async def dial(conn: Connection) -> None:
        dialed.append((conn.host, conn.port))

    monkeypatch.setattr(Connection, "_connect", dial)
    pool = Pool()
    conn = redis_client.SentinelConnection(connection_pool=pool)
    await conn._connect()
    pool.primary = ("10.0.0.2", 6380)  # promoted
    await conn._connect()
    assert dialed == [("10.0.0.1", 6379), ("10.0.0.2", 6380)]
