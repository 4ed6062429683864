"""The requester side of the lock: publish commands, await their outcomes.

Publishing: commands sent in the same moment leave together. Each one joins a queue, and a
flusher writes the whole queue as one pipeline of XADDs (one round trip for any number of
commands); up to FLUSHES flushers run at once, so commands arriving during one publish go
out in another. A lone command waits for nothing: a flusher runs as soon as the event loop
is free.

Replies: one long-lived pub/sub channel per client (per process) and a map from request id to
a waiting future. The lock-keeper publishes one JSON array of outcomes per batch it applied,
so one message may answer many requests. One connection serves any number of concurrent
requests, unlike a blocking pop per request, which holds a pool connection while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from faststream.redis.message import DATA_KEY
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from kubescaler.adapters import lockstate, redis_client
from kubescaler.domain.errors import Conflict, DependencyUnavailable
from kubescaler.domain.locks import Action, LockCommand, LockOutcome, now_ms
from kubescaler.settings import Settings

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[LockOutcome] | LockOutcome).decode
RECONNECT_S = 0.5
#: Most publishes (XADD pipelines) in flight at once.
FLUSHES = 4


class _Sending:
    """One command on its way: published (or why not), then answered."""

    __slots__ = ("answer", "cmd", "published")

    def __init__(self, cmd: LockCommand, loop: asyncio.AbstractEventLoop) -> None:
        self.cmd = cmd
        self.published: asyncio.Future[None] = loop.create_future()
        self.answer: asyncio.Future[LockOutcome] = loop.create_future()


class LockClient:
    """Use as ``async with LockClient(settings) as locks: await locks.acquire(...)``."""

    def __init__(self, settings: Settings, name: str = "") -> None:
        self.settings = settings
        self.lock = settings.lock
        who = name or settings.process_name
        self.reply_channel = lockstate.reply_channel(f"{who}:{uuid.uuid4().hex[:8]}")
        self.redis: Redis | None = None
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._flushers: set[asyncio.Task[None]] = set()
        self._queue: list[_Sending] = []
        self._waiting: dict[str, _Sending] = {}

    async def start(self) -> None:
        """Connect and subscribe to the reply channel (before any command can be answered)."""
        self.redis = redis_client.connect(self.settings.redis.url, self.settings.redis.timeout_s)
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self.reply_channel)
        self._listener = asyncio.create_task(self._listen(self._pubsub), name="lock-replies")

    async def stop(self) -> None:
        for task in (self._listener, *self._flushers):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        if self.redis is not None:
            await self.redis.aclose()

    async def __aenter__(self) -> LockClient:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def ping(self) -> None:
        """Raise DependencyUnavailable("redis") when the stream Redis does not answer."""
        assert self.redis is not None, "client not started"
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis", f"no answer to PING: {exc}") from exc

    # -- replies ---------------------------------------------------------------------------

    async def _listen(self, pubsub: PubSub) -> None:
        failing = False
        while True:
            try:
                msg: Any = await pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("lock reply channel: %s; reconnecting", exc)
                failing = True
                await asyncio.sleep(RECONNECT_S)
                continue
            failing = False
            if msg is not None and msg.get("type") == "message":
                self._answer(msg["data"])

    def _answer(self, data: bytes) -> None:
        try:
            got = _decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("unreadable lock reply: %s", exc)
            return
        for out in got if isinstance(got, list) else [got]:
            sending = self._waiting.get(out.request_id)
            if sending is not None and not sending.answer.done():
                sending.answer.set_result(out)

    # -- publishing ------------------------------------------------------------------------

    def _enqueue(self, sending: _Sending) -> None:
        self._queue.append(sending)
        if len(self._flushers) < FLUSHES:
            task = asyncio.create_task(self._flush(), name="lock-publish")
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)

    async def _flush(self) -> None:
        """Publish the queue as one pipeline, again until it stays empty."""
        while self._queue:
            batch, self._queue = self._queue, []
            await self._publish(batch)

    async def _publish(self, batch: Sequence[_Sending]) -> None:
        assert self.redis is not None, "client not started"
        live = [s for s in batch if not s.published.done()]  # a cancelled send is skipped
        if not live:
            return
        lock = self.lock
        try:
            if len(live) == 1:  # one command costs the client less than a pipeline of one
                await self.redis.xadd(
                    lock.command_stream,
                    {DATA_KEY: _encode(live[0].cmd)},
                    maxlen=lock.command_maxlen,
                    approximate=True,
                )
            else:
                pipe = self.redis.pipeline(transaction=False)
                for s in live:
                    pipe.xadd(
                        lock.command_stream,
                        {DATA_KEY: _encode(s.cmd)},
                        maxlen=lock.command_maxlen,
                        approximate=True,
                    )
                await pipe.execute()
        except (RedisError, OSError) as exc:
            error = DependencyUnavailable("redis", f"cannot publish lock command: {exc}")
            for s in live:
                if not s.published.done():
                    s.published.set_exception(error)
            return
        for s in live:
            if not s.published.done():
                s.published.set_result(None)

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
        sending = _Sending(cmd, asyncio.get_running_loop())
        self._waiting[cmd.request_id] = sending
        try:
            async with asyncio.timeout(timeout / 1000):
                self._enqueue(sending)
                await sending.published
                return await sending.answer
        except TimeoutError as exc:
            # (awaiting it when the time ran out cancelled it: cancelled = never published)
            if not sending.published.done() or sending.published.cancelled():
                raise DependencyUnavailable(
                    "redis", f"lock command not published in {timeout} ms"
                ) from exc
            raise DependencyUnavailable(
                "lock-keeper", f"no answer to {action} in {timeout} ms"
            ) from exc
        finally:
            self._waiting.pop(cmd.request_id, None)
            if not sending.published.done():
                sending.published.cancel()

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
        self,
        user_id: uuid.UUID,
        profile_id: uuid.UUID,
        owner: str,
        token: int = 0,
        timeout_ms: int | None = None,
    ) -> LockOutcome:
        """Result ``refreshed`` (new ``expires_at_ms``) or ``lost`` (stop streaming): lost too
        when ``token`` is no longer the pair's newest grant (superseded). ``timeout_ms`` as
        for :meth:`send`."""
        out = await self.send("refresh", user_id, profile_id, owner, timeout_ms, token=token)
        return _told(out)

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
