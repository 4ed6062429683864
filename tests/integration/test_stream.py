"""The stream service end to end: real base, Cassandra, Redis masters, lock-keeper, nginx."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
import pytest

from kubescaler.domain.sse import SseMessage, SseParser
from kubescaler.entrypoints import replay
from kubescaler_dev.nginx import Nginx
from kubescaler_dev.redis import RedisServer
from kubescaler_dev.services import Service, start_service

pytestmark = pytest.mark.integration


@dataclass
class Pair:
    user: str
    profile: str
    other_profile: str  # a profile the user is NOT bound to
    stranger: str = field(default_factory=lambda: str(uuid.uuid4()))

    def path(self, session: str | None = None, profile: str | None = None) -> str:
        q = f"?session={session}" if session else ""
        return f"/stream/{self.user}/{profile or self.profile}{q}"


MakePairs = Callable[..., list[tuple[str, str, str]]]  # the shared_user_pairs fixture


@pytest.fixture(scope="module")
def pairs(main_service: Service, shared_user_pairs: MakePairs) -> list[Pair]:
    """Fresh test data; each test takes its own pairs so locks never leak between tests."""
    with httpx.Client(base_url=main_service.url, timeout=60) as main:
        return [Pair(*t) for t in shared_user_pairs(main, 60, 30, 20)]


@pytest.fixture
def pair(pairs: list[Pair]) -> Pair:
    return pairs.pop()


CLOSED = "(closed by the server)"  # the event open_stream queues when the stream ends


@contextlib.asynccontextmanager
async def open_stream(url: str) -> AsyncIterator[tuple[httpx.Response, asyncio.Queue[SseMessage]]]:
    """An SSE client: the response, and a queue of parsed events fed in the background."""
    client = httpx.AsyncClient(timeout=httpx.Timeout(10, read=30))
    queue: asyncio.Queue[SseMessage] = asyncio.Queue()
    async with client.stream("GET", url) as response:

        async def pump() -> None:
            parser = SseParser()
            async for chunk in response.aiter_raw():
                for msg in parser.feed(chunk):
                    queue.put_nowait(msg)
            queue.put_nowait(SseMessage(event=CLOSED, data=""))

        task = asyncio.create_task(pump()) if response.status_code == 200 else None
        try:
            yield response, queue
        finally:
            if task:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
    await client.aclose()


async def next_event(
    queue: asyncio.Queue[SseMessage], kind: str, timeout: float = 10
) -> SseMessage:
    async with asyncio.timeout(timeout):
        while (msg := await queue.get()).event != kind:
            pass
    return msg


async def aget(url: str, timeout: float = 10) -> httpx.Response:
    async with httpx.AsyncClient(timeout=timeout) as http:
        return await http.get(url)


def data(msg: SseMessage) -> dict[str, object]:
    return msgspec.json.decode(msg.data)  # type: ignore[no-any-return]


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


async def test_lock_keeper_down_is_503_within_the_timeout(
    gateway: Nginx, lock_keeper_service: Service, pair: Pair
) -> None:
    """No lock-keeper: the stream answers 503 naming it after the request timeout (2 s)."""
    lock_keeper_service.stop()
    try:
        started = time.monotonic()
        r = await aget(gateway.url + pair.path("session-nolock-1"), timeout=30)
        took = time.monotonic() - started
        assert r.status_code == 503, r.text
        assert r.json()["dependency"] == "lock-keeper"
        assert took < 4
    finally:
        lock_keeper_service.start_ready()


async def test_paused_redis_is_503_naming_redis_not_the_lock_keeper(
    stream_services: list[Service], redis_server: RedisServer, pairs: list[Pair]
) -> None:
    """Redis stalled (SIGSTOP): the lock command cannot be published, so the 503 names redis;
    once it runs again, the next stream is granted at once: the lock-keeper rode out the stall
    (its broker retries a timed-out read) instead of pausing 5 s after a failed one."""
    pair, later = pairs.pop(), pairs.pop()
    redis_server.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        r = await aget(stream_services[0].url + pair.path("session-paused-1"), timeout=30)
        took = time.monotonic() - started
    finally:
        redis_server.signal(signal.SIGCONT)
    assert r.status_code == 503, r.text
    assert r.json()["dependency"] == "redis", r.json()
    assert took < 4
    async with open_stream(stream_services[0].url + later.path("session-paused-2")) as (r, _):
        assert r.status_code == 200, (await r.aread()).decode()


async def test_base_down_is_503(gateway: Nginx, base_service: Service, pair: Pair) -> None:
    base_service.stop()
    try:
        r = await aget(gateway.url + pair.path("session-nobase-1"), timeout=30)
        assert r.status_code == 503, r.text
        assert r.json()["dependency"] == "base"
    finally:
        base_service.start_ready()


async def test_sigterm_drains_clients_to_the_other_instance(
    gateway: Nginx, stream_services: list[Service], pairs: list[Pair], redis_server: RedisServer
) -> None:
    """SIGTERM: clients get `reconnect` with a retry, come back on the other instance at once
    (their locks handed over), the drained process exits, and the lock history verifies."""
    mine = [pairs.pop() for _ in range(4)]
    async with contextlib.AsyncExitStack() as stack:
        opened = []
        for i, p in enumerate(mine):
            _, q = await stack.enter_async_context(
                open_stream(gateway.url + p.path(f"session-drain-{i}"))
            )
            opened.append((p, q, data(await next_event(q, "hello"))["instance"]))
        victim_name = opened[0][2]
        victim = next(s for s in stream_services if s.name == victim_name)
        on_victim = [(p, q) for p, q, inst in opened if inst == victim_name]
        assert victim.popen is not None
        victim.signal(signal.SIGTERM)
        for _, q in on_victim:
            msg = await next_event(q, "reconnect", timeout=5)
            assert msg.retry is not None
        assert victim.popen.wait(15) is not None
        for p, _ in on_victim:
            session = f"session-drain-{mine.index(p)}"
            async with open_stream(gateway.url + p.path(session)) as (r, q):
                assert r.status_code == 200, "the same session must get its lock back at once"
                hello = data(await next_event(q, "hello"))
                assert hello["instance"] != victim_name
    victim.start_ready()
    assert replay.run(["--redis-url", redis_server.url, "--verify"]) == 0


@pytest.fixture(scope="module")
def slow_refresh_stream(
    stream_env: dict[str, str], lock_keeper_service: Service, test_state: Path
) -> Iterator[Service]:
    """A third stream instance refreshing every 30 s: what ends its streams sooner is news."""
    env = {
        **stream_env,
        "KUBESCALER_LOCK_REFRESH_INTERVAL_MS": "30000",
        "KUBESCALER_INSTANCE": "stream-slow-refresh",
    }
    svc = start_service("stream", env, test_state / "logs", name="stream-slow-refresh")
    yield svc
    svc.stop()


@pytest.mark.parametrize("newer_on", ["other instance", "same instance"])
async def test_a_newer_stream_of_the_same_session_supersedes_the_older_one(
    slow_refresh_stream: Service,
    stream_services: list[Service],
    redis_server: RedisServer,
    pair: Pair,
    newer_on: str,
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
    assert replay.run(["--redis-url", redis_server.url, "--verify"]) == 0


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_slow_client_gets_drops_not_memory_growth(
    stream_env: dict[str, str], lock_keeper_service: Service, pairs: list[Pair], test_state: object
) -> None:
    """A client that does not read: the server drops events, says how many, and its memory
    stays flat instead of buffering."""
    env = {
        **stream_env,
        "KUBESCALER_STREAM_EVENT_BYTES": "65536",
        "KUBESCALER_STREAM_EVENTS_PER_S": "32",
        "KUBESCALER_INSTANCE": "stream-fast",
    }
    svc = start_service("stream", env, lock_keeper_service.log.parent, name="stream-fast")
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
            client = redis_sync.Redis.from_url(master.url)
            client.set(key, "intruder", px=10_000)
            client.close()
        lost = await next_event(q, "lock-lost", timeout=5)
        assert "owner" in data(lost)["reason"]  # type: ignore[operator]


async def test_streams_come_back_after_redis_restarts_empty(
    gateway: Nginx, redis_server: RedisServer, pair: Pair
) -> None:
    """Redis restarted without its data (the command stream and its consumer group gone):
    the lock-keeper recreates the group and streams are granted again within seconds."""
    redis_server.stop()
    redis_server.start_ready()
    deadline = time.monotonic() + 20
    while True:
        async with open_stream(gateway.url + pair.path("session-restart-1")) as (r, q):
            if r.status_code == 200:
                await next_event(q, "hello")
                return
        assert time.monotonic() < deadline, f"still {r.status_code} 20 s after the restart"
        await asyncio.sleep(0.5)
