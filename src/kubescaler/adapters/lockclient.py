"""The requester side of the lock: publish a command, await its outcome.

Reply path: one long-lived pub/sub reply channel per client (per process) and a map from
request id to a waiting future. One connection serves any number of concurrent requests,
unlike a BLOCKing pop per request, which holds a pool connection while it waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from datetime import UTC, datetime

import msgspec
from faststream.redis import RedisBroker
from faststream.redis.annotations import RedisChannelMessage
from redis.exceptions import RedisError

from kubescaler.adapters.redis_client import retry_options
from kubescaler.domain.errors import Conflict, DependencyUnavailable
from kubescaler.domain.locks import Action, LockCommand, LockOutcome, now_ms
from kubescaler.settings import Settings

PUBLISH_CONCURRENCY = 32
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(LockOutcome).decode


class LockClient:
    """Use as ``async with LockClient(settings) as locks: await locks.acquire(...)``."""

    def __init__(self, settings: Settings, name: str = "") -> None:
        self.lock = settings.lock
        who = name or settings.instance or f"{socket.gethostname()}-{os.getpid()}"
        self.reply_channel = f"kubescaler:lock:reply:{who}:{uuid.uuid4().hex[:8]}"
        self.broker = RedisBroker(
            settings.redis.url, **retry_options(settings.redis.timeout_s), log_level=logging.DEBUG
        )
        # Publishes borrow pool connections; bounding them keeps hundreds of concurrent
        # requests inside the pool (the replies all arrive on the one pub/sub connection).
        self._publishing = asyncio.Semaphore(PUBLISH_CONCURRENCY)
        self._waiting: dict[str, asyncio.Future[LockOutcome]] = {}

        @self.broker.subscriber(channel=self.reply_channel, include_in_schema=False)
        async def on_reply(msg: RedisChannelMessage) -> None:
            out = _decode(msg.body)
            future = self._waiting.get(out.request_id)
            if future is not None and not future.done():
                future.set_result(out)

    async def start(self) -> None:
        await self.broker.start()

    async def stop(self) -> None:
        await self.broker.stop()

    async def __aenter__(self) -> LockClient:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def send(
        self,
        action: Action,
        user_id: uuid.UUID,
        profile_id: uuid.UUID,
        owner: str,
        timeout_ms: int | None = None,
        request_id: str | None = None,
        token: int = 0,
    ) -> LockOutcome:
        """Publish one command and return its outcome, whatever it is.

        ``token`` is the fencing token a refresh or release speaks for (0: none). Within
        ``timeout_ms`` (default ``lock.request_timeout_ms``; also the command's deadline) a
        publish Redis does not take raises DependencyUnavailable("redis"), and an answer that
        never comes after the publish DependencyUnavailable("lock-keeper").
        """
        timeout = timeout_ms or self.lock.request_timeout_ms
        cmd = LockCommand(
            action=action,
            user_id=user_id,
            profile_id=profile_id,
            owner=owner,
            request_id=request_id or uuid.uuid4().hex,
            deadline_ms=now_ms() + timeout,
            reply_to=self.reply_channel,
            fencing_token=token,
        )
        future: asyncio.Future[LockOutcome] = asyncio.get_running_loop().create_future()
        self._waiting[cmd.request_id] = future
        published = False
        try:
            async with asyncio.timeout(timeout / 1000):
                async with self._publishing:
                    await self.broker.publish(
                        _encode(cmd),
                        stream=self.lock.command_stream,
                        maxlen=self.lock.command_maxlen,
                    )
                published = True
                return await future
        except TimeoutError as exc:
            if not published:
                raise DependencyUnavailable(
                    "redis", f"lock command not published in {timeout} ms"
                ) from exc
            raise DependencyUnavailable(
                "lock-keeper", f"no answer to {action} in {timeout} ms"
            ) from exc
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis", f"cannot publish lock command: {exc}") from exc
        finally:
            self._waiting.pop(cmd.request_id, None)

    async def acquire(self, user_id: uuid.UUID, profile_id: uuid.UUID, owner: str) -> LockOutcome:
        """The granted outcome (with ``fencing_token`` and ``expires_at_ms``).

        Raises Conflict when another owner holds the pair (``extra`` has ``holder_expires_at_ms``)
        and DependencyUnavailable when the lock cannot be decided.
        """
        out = _told(await self.send("acquire", user_id, profile_id, owner))
        if out.result == "denied":
            until = datetime.fromtimestamp(out.expires_at_ms / 1000, UTC).isoformat("T", "seconds")
            raise Conflict(
                f"this profile is already streaming for this user in another session; "
                f"its lock lapses at {until} unless that session keeps it",
                holder_expires_at_ms=out.expires_at_ms,
            )
        return out

    async def refresh(
        self, user_id: uuid.UUID, profile_id: uuid.UUID, owner: str, token: int = 0
    ) -> LockOutcome:
        """Result ``refreshed`` (new ``expires_at_ms``) or ``lost`` (stop streaming): lost too
        when ``token`` is no longer the pair's newest grant (superseded)."""
        return _told(await self.send("refresh", user_id, profile_id, owner, token=token))

    async def release(
        self, user_id: uuid.UUID, profile_id: uuid.UUID, owner: str, token: int = 0
    ) -> LockOutcome:
        """Result ``released`` (``detail`` says "not held" when it was not ours, or when
        ``token`` was superseded: the newer grant keeps the lock)."""
        return _told(await self.send("release", user_id, profile_id, owner, token=token))


def _told(out: LockOutcome) -> LockOutcome:
    """Turn the outcomes that mean "could not decide" into a 503."""
    if out.result == "quorum_unavailable":
        raise DependencyUnavailable("redlock", out.detail or "lock quorum unavailable")
    if out.result == "expired":
        raise DependencyUnavailable("lock-keeper", "command expired before a lock-keeper took it")
    return out
