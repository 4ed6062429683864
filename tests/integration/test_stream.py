"""The stream service end to end: real base, Cassandra, Redis masters, lock-keeper, nginx.

What a stream does while everything runs; test_stream_outages has what it does when a process
goes away.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from streamclient import CLOSED, Pair, aget, data, next_event, open_stream

from kubescaler.domain.sse import SseParser
from kubescaler.entrypoints import replay
from kubescaler_dev.nginx import Nginx
from kubescaler_dev.redis import RedisServer
from kubescaler_dev.services import Service, start_service

pytestmark = pytest.mark.integration


async def test_bound_pair_streams_data_through_the_entry_point(gateway: Nginx, pair: Pair) -> None:
    """hello names the instance and fencing token; data events carry sequence and payload;
    every event says its schema version."""
    async with open_stream(gateway.url + pair.path("session-stream-1")) as (r, q):
        assert r.status_code == 200, (await r.aread()).decode()
        assert r.headers["content-type"].startswith("text/event-stream")
        hello = data(await next_event(q, "hello"))
        assert hello["instance"] in ("stream-a", "stream-b")
        assert isinstance(hello["token"], int)
        assert hello["token"] > 0
        seqs = []
        for _ in range(5):
            ev = data(await next_event(q, "data"))
            assert ev["v"] == hello["v"] == 1
            assert ev["token"] == hello["token"]
            assert ev["instance"] == hello["instance"]
            assert len(ev["payload"]) == 2048  # type: ignore[arg-type]
            seqs.append(ev["seq"])
        assert seqs == sorted(seqs)


async def test_second_session_is_refused_on_every_instance(
    stream_services: list[Service], pair: Pair
) -> None:
    """While one session streams a pair, another gets 409 with the holder's expiry, anywhere."""
    first, second = stream_services
    async with open_stream(first.url + pair.path("session-owner-1")) as (_, q):
        await next_event(q, "hello")
        for svc in (first, second):
            async with httpx.AsyncClient() as http:
                refused = await http.get(svc.url + pair.path("session-other-1"))
            assert refused.status_code == 409, refused.text
            assert refused.json()["holder_expires_at_ms"] > time.time() * 1000
        metrics = (await aget(first.url + "/metrics")).text
        assert "kubescaler_stream_connections 1.0" in metrics


@pytest.mark.parametrize(
    ("make", "status", "says"),
    [
        (lambda p: f"/stream/nope/{p.profile}", 400, "user id is not a valid UUID"),
        (lambda p: f"/stream/{p.user}/123", 400, "profile id is not a valid UUID"),
        (lambda p: f"/stream/{p.user}/{p.other_profile}", 403, "not bound"),
        (lambda p: f"/stream/{p.user}/{p.stranger}", 404, "not found"),
        (lambda p: f"/stream/{p.stranger}/{p.profile}", 404, "not found"),
        (lambda p: f"/stream/{p.user}/{p.profile}?session=short", 400, "session"),
    ],
)
def test_refusals_are_clear(
    gateway: Nginx, pairs: list[Pair], make: object, status: int, says: str
) -> None:
    """Malformed 400, not bound 403, unknown 404: each with a message saying what."""
    r = httpx.get(gateway.url + make(pairs[0]))  # type: ignore[operator]
    assert r.status_code == status, r.text
    assert says in r.json()["error"]


async def test_disconnect_keeps_the_pair_until_ttl_for_others_not_for_the_same_session(
    gateway: Nginx, main_service: Service, pair: Pair
) -> None:
    """After a disconnect: /login still lists the pair; the same session gets straight back in;
    another session is refused until the TTL (3 s in tests) runs out."""
    url = gateway.url
    async with open_stream(url + pair.path("session-keep-1")) as (_, q):
        await next_event(q, "hello")
    login = (await aget(f"{main_service.url}/login/{pair.user}")).json()
    assert pair.profile in login
    assert (await aget(url + pair.path("session-keep-2"))).status_code == 409
    async with open_stream(url + pair.path("session-keep-1")) as (r, q):
        assert r.status_code == 200
        await next_event(q, "hello")
    left = time.monotonic()
    while (await aget(f"{main_service.url}/login/{pair.user}")).json():
        assert time.monotonic() - left < 6, "the pair did not lapse within its TTL"
        await asyncio.sleep(0.2)
    async with open_stream(url + pair.path("session-keep-2")) as (r, q):
        assert r.status_code == 200
        await next_event(q, "hello")


async def test_refresh_keeps_a_live_stream_past_its_ttl(gateway: Nginx, pair: Pair) -> None:
    """A stream outlives several TTLs because it refreshes its lock while it is open."""
    async with open_stream(gateway.url + pair.path("session-long-1")) as (_, q):
        await next_event(q, "hello")
        await asyncio.sleep(4.5)  # 1.5 TTLs
        await next_event(q, "data")
        assert (await aget(gateway.url + pair.path("session-long-2"))).status_code == 409


@pytest.fixture(scope="module")
def slow_refresh_stream(
    stream_env: dict[str, str],
    lock_keeper_service: Service,
    test_state: Path,
    redis_passwords: dict[str, str],
) -> Iterator[Service]:
    """A third stream instance refreshing every 30 s: what ends its streams sooner is news."""
    env = {
        **stream_env,
        "KUBESCALER_LOCK_REFRESH_INTERVAL_MS": "30000",
        "KUBESCALER_INSTANCE": "stream-slow-refresh",
    }
    svc = start_service(
        "stream", env, test_state / "logs", name="stream-slow-refresh", passwords=redis_passwords
    )
    yield svc
    svc.stop()


@pytest.mark.parametrize("newer_on", ["other instance", "same instance"])
async def test_a_newer_stream_of_the_same_session_supersedes_the_older_one(
    slow_refresh_stream: Service,
    stream_services: list[Service],
    redis_server: RedisServer,
    pair: Pair,
    newer_on: str,
    redis_login: Callable[[str], None],
) -> None:
    """One session opens the pair twice: the older stream ends with `superseded` naming the
    newer token within 2 s (its own refresh is 30 s away), only the newer token keeps
    streaming, and the lock history verifies."""
    second = stream_services[0] if newer_on == "other instance" else slow_refresh_stream
    path = pair.path("session-twice-1")
    async with open_stream(slow_refresh_stream.url + path) as (_, older):
        old = data(await next_event(older, "hello"))
        await next_event(older, "data")
        async with open_stream(second.url + path) as (r, newer):
            assert r.status_code == 200, "the same session is let in again"
            new = data(await next_event(newer, "hello"))
            granted_at = time.monotonic()
            assert new["token"] > old["token"]  # type: ignore[operator]
            ended = data(await next_event(older, "superseded", timeout=2))
            assert time.monotonic() - granted_at < 2
            assert ended["token"] == new["token"]
            assert ended["held_token"] == old["token"]
            assert str(new["token"]) in ended["reason"]  # type: ignore[operator]
            after = await asyncio.wait_for(older.get(), 5)
            assert after.event == CLOSED, "the older stream ends right after superseded"
            streamed_until = time.monotonic() + 2.5  # past a refresh (1 s here) of the newer
            while time.monotonic() < streamed_until:
                assert data(await next_event(newer, "data"))["token"] == new["token"]
    redis_login("replay")
    assert replay.run(["--redis-url", redis_server.url, "--verify"]) == 0


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_slow_client_gets_drops_not_memory_growth(
    stream_env: dict[str, str],
    lock_keeper_service: Service,
    pairs: list[Pair],
    test_state: object,
    redis_passwords: dict[str, str],
) -> None:
    """A client that does not read: the server drops events, says how many, and its memory
    stays flat instead of buffering."""
    env = {
        **stream_env,
        "KUBESCALER_STREAM_EVENT_BYTES": "65536",
        "KUBESCALER_STREAM_EVENTS_PER_S": "32",
        "KUBESCALER_INSTANCE": "stream-fast",
    }
    logs = lock_keeper_service.log.parent
    svc = start_service("stream", env, logs, name="stream-fast", passwords=redis_passwords)
    port = svc.port
    p = pairs.pop()
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {p.path('session-slow-1')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert svc.popen is not None
        time.sleep(3)
        rss_early = _rss_mib(svc.popen.pid)
        time.sleep(6)
        rss_late = _rss_mib(svc.popen.pid)
        sock.settimeout(2)
        parser, events = SseParser(), []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not any(
            data(e)["dropped"]
            for e in events
            if e.event == "data"  # type: ignore[operator]
        ):
            events += parser.feed(sock.recv(1 << 16))
        sock.close()
        drops = [data(e)["dropped"] for e in events if e.event == "data"]
        assert any(drops), "a slow client must be told about dropped events"
        assert rss_late - rss_early < 8, (rss_early, rss_late)
        metrics = httpx.get(svc.url + "/metrics").text
        dropped = next(
            line
            for line in metrics.splitlines()
            if line.startswith("kubescaler_stream_dropped_events_total")
        )
        assert float(dropped.split()[1]) > 100
    finally:
        svc.stop()


async def test_a_lost_lock_ends_the_stream_with_lock_lost(
    gateway: Nginx, redis_masters: list[RedisServer], pair: Pair
) -> None:
    """When a refresh finds the lock owned by someone else, the client gets `lock-lost` and
    the stream ends instead of streaming without the lock."""
    import redis as redis_sync

    from kubescaler.adapters.lockstate import lock_key

    key = lock_key(uuid.UUID(pair.user), uuid.UUID(pair.profile))
    async with open_stream(gateway.url + pair.path("session-lost-1")) as (_, q):
        await next_event(q, "hello")
        for master in redis_masters:  # an intruder takes the key on every master
            client = redis_sync.Redis.from_url(master.url, **master.login())
            client.set(key, "intruder", px=10_000)
            client.close()
        lost = await next_event(q, "lock-lost", timeout=5)
        assert "owner" in data(lost)["reason"]  # type: ignore[operator]
