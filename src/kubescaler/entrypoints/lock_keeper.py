"""The lock-keeper worker: consumes lock commands, applies them, answers the requester.

Two subscribers share the consumer group: one reads new commands, the other (FastStream's
``min_idle_time``, i.e. XAUTOCLAIM) takes over commands a dead worker left pending. Both hand
the command to :class:`~kubescaler.adapters.lockkeeper.LockKeeper` and publish the outcome on
the requester's reply channel. Beside the broker, a small Litestar app serves liveness,
readiness and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import prometheus_client as prom
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisStreamMessage
from litestar import Litestar
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from kubescaler.adapters import redis_client
from kubescaler.adapters.lockkeeper import LockKeeper
from kubescaler.adapters.redis_client import retry_options
from kubescaler.adapters.redlock import Redlock, master_client
from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.domain.locks import LockCommand, LockOutcome
from kubescaler.entrypoints.web import create_service_app
from kubescaler.settings import Settings

COMMANDS = prom.Counter(
    "kubescaler_lock_commands_total",
    "Lock commands answered, by action and result.",
    ["action", "result", "path"],
)
APPLY = prom.Histogram(
    "kubescaler_lock_apply_seconds",
    "Time to apply one lock command.",
    ["action"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
PENDING = prom.Gauge(
    "kubescaler_lock_commands_pending",
    "Commands read by some worker and not yet acked.",
)

_decode = msgspec.json.Decoder(LockCommand).decode
_encode = msgspec.json.Encoder().encode
log = logging.getLogger(__name__)
REPLY_CHANNEL = "kubescaler:lock:reply:{requester}"
WATCH_EVERY_S = 2.0


def worker_name(settings: Settings) -> str:
    return settings.instance or f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    """One lock-keeper: its broker, its Redis clients and the keeper, opened by start()."""

    def __init__(self, settings: Settings, name: str = "") -> None:
        self.settings = settings
        self.name = name or worker_name(settings)
        lock = settings.lock
        self.broker = RedisBroker(
            settings.redis.url, **retry_options(settings.redis.timeout_s), log_level=logging.DEBUG
        )
        self.state: Redis | None = None
        self.redlock: Redlock | None = None
        self.keeper: LockKeeper | None = None
        fresh = StreamSub(
            lock.command_stream,
            group=lock.command_group,
            consumer=self.name,
            polling_interval=1000,
            max_records=16,
        )
        claimed = StreamSub(
            lock.command_stream,
            group=lock.command_group,
            consumer=self.name,
            min_idle_time=lock.claim_idle_ms,
            polling_interval=min(lock.claim_idle_ms, 1000),
        )
        reply = self.broker.publisher(
            channel=REPLY_CHANNEL,
            title="lock-outcomes",
            description="The LockOutcome of a command, on the requester's reply channel.",
        )

        @self.broker.subscriber(
            stream=fresh,
            title="lock-commands",
            description="LockCommand: acquire, refresh or release a pair.",
        )
        async def on_command(msg: RedisStreamMessage) -> None:
            await self.handle(msg.body, "fresh")

        @self.broker.subscriber(
            stream=claimed,
            title="lock-commands-claimed",
            description="Commands a dead worker left pending (XAUTOCLAIM).",
        )
        async def on_claimed(msg: RedisStreamMessage) -> None:
            await self.handle(msg.body, "claimed")

        self._reply = reply

    async def handle(self, body: bytes, path: str) -> None:
        """Apply one command and answer it. Raising leaves it pending for another worker."""
        assert self.keeper is not None, "worker not started"
        cmd = _decode(body)
        start = time.perf_counter()
        out, applied = await self.keeper.apply(cmd)  # InFlight: leave it pending
        if applied:
            APPLY.labels(cmd.action).observe(time.perf_counter() - start)
        COMMANDS.labels(cmd.action, out.result, path if applied else "redelivered").inc()
        if cmd.reply_to:
            await self.broker.publish(_encode(out), channel=cmd.reply_to)

    async def start(self) -> None:
        s = self.settings
        self.state = redis_client.connect(s.redis.url, s.redis.timeout_s)
        masters = [master_client(u, s.lock.master_timeout_ms / 1000) for u in s.redis.redlock_urls]
        self.redlock = Redlock(
            masters, s.lock.ttl_ms, s.lock.clock_drift_factor, s.lock.master_timeout_ms
        )
        self.keeper = LockKeeper(self.redlock, self.state, s.lock, self.name)
        await self.broker.start()

    async def stop(self) -> None:
        await self.broker.stop()
        if self.redlock is not None:
            await self.redlock.aclose()
        if self.state is not None:
            await self.state.aclose()

    async def failing(self) -> list[str]:
        """Dependencies that do not answer: the stream Redis and each Redlock master."""
        assert self.state is not None
        assert self.redlock is not None
        out = [f"redlock-master {a}" for a in await self.redlock.ping()]
        try:
            await self.state.ping()
        except Exception:
            out.insert(0, "redis")
        return out

    async def ensure_group(self) -> bool:
        """Create the consumer group if it is gone (Redis restarted without its data).

        FastStream creates it only at start; without this a restarted, empty Redis would leave
        every worker polling a group that no longer exists. From id 0, so commands published
        before the group came back are read too (late ones are answered "expired").
        True when it had to be created.
        """
        assert self.state is not None
        lock = self.settings.lock
        try:
            await self.state.xgroup_create(
                lock.command_stream, lock.command_group, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise
        return True

    async def revive(self) -> bool:
        """Restart the broker if FastStream stopped a subscriber for good.

        FastStream stops a stream subscriber whose consumer group vanished (Redis restarted
        empty) and expects the process to be restarted. A restart of the broker in place
        does the same without dropping the health endpoint. True when it restarted.
        """
        if all(sub.running for sub in self.broker.subscribers):
            return False
        await self.broker.stop()
        await self.broker.start()
        return True

    async def pending(self) -> int:
        assert self.state is not None
        info = await self.state.xpending(
            self.settings.lock.command_stream, self.settings.lock.command_group
        )
        return int(info["pending"])


def create_app(settings: Settings, worker: Worker | None = None) -> Litestar:
    """The lock-keeper process: broker + health + metrics, all opened in the lifespan."""
    keeper = worker or Worker(settings)

    async def watch() -> None:
        """Every few seconds: the consumer group still exists, and the backlog gauge."""
        while True:
            try:
                if await keeper.ensure_group():
                    log.warning(
                        "consumer group %s was gone; created it again", settings.lock.command_group
                    )
                if await keeper.revive():
                    log.warning("restarted the broker: a subscriber had stopped")
                PENDING.set(await keeper.pending())
            except Exception:  # the backlog is unknown while Redis is down
                PENDING.set(float("nan"))
            await asyncio.sleep(WATCH_EVERY_S)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await keeper.start()
        watcher = asyncio.create_task(watch())
        try:
            yield
        finally:
            watcher.cancel()
            await keeper.stop()

    async def redis_check() -> None:
        assert keeper.state is not None
        await keeper.state.ping()

    async def quorum_check() -> None:
        assert keeper.redlock is not None
        down = await keeper.redlock.ping()
        masters = len(settings.redis.redlock_urls)
        if masters - len(down) < masters // 2 + 1:
            raise DependencyUnavailable("redlock", "lock quorum unavailable: " + ", ".join(down))

    return create_service_app(
        "lock-keeper",
        settings,
        handlers=[],
        checks={"redis": redis_check, "redlock": quorum_check},
        lifespan=[lifespan],
    )


def run(settings: Settings) -> None:
    """Run one lock-keeper until SIGTERM/SIGINT (uvicorn stops the lifespan gracefully)."""
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.lock.keeper_port,
        log_level=settings.log_level,
        lifespan="on",
    )


# ---------------------------------------------------------------- AsyncAPI

ASYNCAPI_PATH = Path(__file__).resolve().parents[3] / "docs" / "asyncapi.json"


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI document of the lock-keeper, built from its broker (no connection).

    FastStream derives payload schemas with pydantic, which cannot read msgspec structs, so
    the handlers take ``bytes`` and the message payloads are filled in from msgspec's schema.
    """
    from faststream.specification import AsyncAPI

    broker = Worker(Settings(), name="{worker}").broker
    doc: dict[str, Any] = (
        AsyncAPI(
            broker,
            title="kubescaler lock-keeper",
            version="1.0.0",
            description="Lock commands in, lock outcomes out; see docs/locks.md.",
        )
        .to_specification()
        .to_jsonable()
    )
    (cmd_schema, out_schema), defs = msgspec.json.schema_components([LockCommand, LockOutcome])
    for name, message in doc.get("components", {}).get("messages", {}).items():
        message["payload"] = out_schema if "outcomes" in name.lower() else cmd_schema
    doc.setdefault("components", {}).setdefault("schemas", {}).update(
        {k: _refs(v) for k, v in defs.items()}
    )
    for message in doc["components"]["messages"].values():
        message["payload"] = _refs(message["payload"])
    doc["components"]["schemas"].pop("EmptyPayload", None)  # the bytes handlers' placeholder
    return doc


def _refs(schema: Any) -> Any:
    text = json.dumps(schema).replace('"#/$defs/', '"#/components/schemas/')
    return json.loads(text)


def write_asyncapi(path: Path = ASYNCAPI_PATH) -> str:
    text = json.dumps(asyncapi_document(), indent=2, sort_keys=True) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


if __name__ == "__main__":
    write_asyncapi()
