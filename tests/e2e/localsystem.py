"""What the local-system tests drive: the running `./dev up` (its output, the pids it reports)
and clients of it through its entry point (fresh pairs, an SSE watcher, the lock commands)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import time
from pathlib import Path
from unittest import mock

import httpx
import msgspec
import pytest
import redis

from kubescaler.domain.sse import SseMessage, SseParser
from kubescaler.entrypoints import replay
from kubescaler_dev import logins


class Up:
    """The running `./dev up`: its process, ports and every line it printed so far."""

    def __init__(self, proc: subprocess.Popen[str], ports: dict[str, int], state: Path) -> None:
        self.proc = proc
        self.ports = ports
        self.state = state  # its KUBESCALER_LOCAL_STATE_DIR
        self.gateway = f"http://127.0.0.1:{ports['GATEWAY_PORT']}"
        self.redis_url = f"redis://127.0.0.1:{ports['redis']}/0"
        self.output: list[str] = []
        self._changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.output.append(line)
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float, after: int = 0) -> re.Match[str]:
        """The first line from index ``after`` on that matches ``pattern``, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.output[after:]:
                    if found := re.search(pattern, line):
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or not self.reader.is_alive():
                    pytest.fail(f"no line matching {pattern!r} in up's output:\n{self.text}")
                self._changed.wait(left)

    @property
    def passwords(self) -> dict[str, str]:
        """The Redis passwords `up` made in its state directory on its first start."""
        return logins.kept(self.state / "redis-passwords")

    def redis(self, **options: float) -> redis.Redis:
        """A client of the state Redis (primary at the start) as the local admin."""
        return redis.Redis.from_url(self.redis_url, **logins.login(self.passwords), **options)

    def replay(self, *args: str) -> int:
        """`kubescaler replay --redis-url <the state Redis> args` as the replay user."""
        login = logins.service_env("replay", self.passwords)
        with mock.patch.dict("os.environ", login):
            return replay.run(["--redis-url", self.redis_url, *args])

    @property
    def text(self) -> str:
        return "".join(self.output)

    def pid(self, name: str) -> int:
        """The pid `up` last reported for process ``name`` (at its start or restart)."""
        found = re.findall(rf"\b{re.escape(name)}\b.*\(pid (\d+)\)", self.text)
        assert found, f"no pid for {name} in:\n{self.text}"
        return int(found[-1])


def free_pairs(up: Up, count: int) -> list[tuple[str, str]]:
    """``count`` bound (user, profile) pairs nobody streams now, from fresh test data."""
    with httpx.Client(base_url=up.gateway, timeout=60) as http:
        r = http.post(
            "/main/testdata", params={"users": count, "profiles": count, "shared_users": 0}
        )
        assert r.status_code == 201, r.text
        pairs = []
        for profile in http.get("/main/profiles", params={"limit": 5000}).json():
            user = profile["users"][0] if profile["users"] else None
            if user and profile["id"] not in http.get(f"/main/login/{user}").json():
                pairs.append((user, profile["id"]))
    assert len(pairs) >= count
    return pairs[-count:]


class Watcher:
    """One SSE client through the entry point; its events in a queue, fed in the background."""

    def __init__(self, up: Up, pair: tuple[str, str], session: str) -> None:
        self.url = f"{up.gateway}/stream/{pair[0]}/{pair[1]}?session={session}"
        self.events: asyncio.Queue[SseMessage] = asyncio.Queue()
        self.status = 0
        self.task: asyncio.Task[None] | None = None

    async def open(self, http: httpx.AsyncClient, tries: int = 40) -> dict[str, object]:
        """Connect (again on 502/503 while the entry point finds a live instance); the hello."""
        for _ in range(tries):
            opened: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self.events = asyncio.Queue()
            self.task = asyncio.create_task(self._read(http, opened))
            self.status = await opened
            if self.status == 200:
                return await self.next("hello")
            assert self.status in (502, 503), self.status
            await asyncio.sleep(0.25)
        pytest.fail(f"{self.url} answered {self.status} {tries} times")

    async def _read(self, http: httpx.AsyncClient, opened: asyncio.Future[int]) -> None:
        try:
            async with http.stream("GET", self.url) as response:
                opened.set_result(response.status_code)
                if response.status_code != 200:
                    return
                parser = SseParser()
                async for chunk in response.aiter_raw():
                    for msg in parser.feed(chunk):
                        self.events.put_nowait(msg)
        except Exception as exc:  # a failed connect fails open(); a dropped stream, next()
            if not opened.done():
                opened.set_exception(exc)

    async def next(self, kind: str, timeout: float = 10) -> dict[str, object]:
        async with asyncio.timeout(timeout):
            while (msg := await self.events.get()).event != kind:
                pass
        assert msg.event != "reconnect" or msg.retry is not None
        return msgspec.json.decode(msg.data)  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


def command_ids(client: redis.Redis) -> set[str]:
    """The request ids of every lock command published (inside FastStream's envelope)."""
    ids = set()
    for _, fields in client.xrange("kubescaler:lock:commands"):
        found = re.search(rb'"request_id":"([^"]+)"', fields[b"__data__"])
        assert found, fields
        ids.add(found.group(1).decode())
    return ids
