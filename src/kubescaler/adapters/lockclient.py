"""The requester side of the lock: publish commands, await their outcomes.

Publishing: commands sent in the same moment leave together (:mod:`.coalesce`), as one
pipeline of XADDs (one round trip for any number of commands); up to FLUSHES publishes run at
once, so commands arriving during one go out in another. A lone command waits for nothing.

Replies: one long-lived pub/sub channel per client (per process) and a map from request id to
a waiting future. The lock-keeper publishes one JSON array of outcomes per batch it applied,
so one message may answer many requests. One connection serves any number of concurrent
requests, unlike a blocking pop per request, which holds a pool connection while it waits.

A pub/sub message published while the channel is not subscribed is gone: after a Redis
restart or a failover, the keeper may answer commands on the (new) primary before this client
has subscribed there again. So each time the reply channel reconnects, every command still
waiting for its answer is published again, with its request id: the keeper answers a command
it already applied from its applied-command record (the outcome, not a second application)
and applies one it never saw (a publish the failover lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from kubescaler.adapters import lockstate, redis_client
from kubescaler.adapters.coalesce import Coalescer
from kubescaler.adapters.lockwire import DATA_KEY, decode_outcomes, encode
from kubescaler.domain.errors import Conflict, DependencyUnavailable
from kubescaler.domain.locks import Action, LockCommand, LockOutcome, now_ms
from kubescaler.settings import Settings

log = logging.getLogger(__name__)
RECONNECT_S = 0.5
#: Most publishes (XADD pipelines) in flight at once.
FLUSHES = 4


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
        self._publish = Coalescer(self._xadd, FLUSHES)
        self._waiting: dict[str, asyncio.Future[LockOutcome]] = {}
        self._sent: dict[str, LockCommand] = {}  # the waiting commands, to publish again
        self._resends: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect and subscribe to the reply channel (before any command can be answered)."""
        self.redis = redis_client.connect(self.settings.redis)
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self.reply_channel)
        assert self._pubsub.connection is not None
        # called after redis-py's own callback, which subscribes again on every reconnection
        self._pubsub.connection.register_connect_callback(self._reconnected)
        self._listener = asyncio.create_task(self._listen(self._pubsub), name="lock-replies")

    async def stop(self) -> None:
        for task in list(self._resends):
            task.cancel()
        await self._publish.aclose()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(BaseException):
                await self._listener
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

    async def _reconnected(self, _: object) -> None:
        """The reply channel is subscribed again: publish every waiting command again."""
        waiting = [cmd for rid, cmd in self._sent.items() if not self._waiting[rid].done()]
        if waiting:
            log.warning(
                "lock reply channel back; publishing %d waiting commands again", len(waiting)
            )
            task = asyncio.create_task(self._resend(waiting), name="lock-resend")
            self._resends.add(task)
            task.add_done_callback(self._resends.discard)

    async def _resend(self, cmds: list[LockCommand]) -> None:
        with contextlib.suppress(DependencyUnavailable):  # their own timeouts still run
            await asyncio.gather(*(self._publish(cmd) for cmd in cmds))

    def _answer(self, data: bytes) -> None:
        try:
            got = decode_outcomes(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("unreadable lock reply: %s", exc)
            return
        for out in got:
            answer = self._waiting.get(out.request_id)
            if answer is not None and not answer.done():
                answer.set_result(out)

    # -- publishing ------------------------------------------------------------------------

    async def _xadd(self, cmds: list[LockCommand]) -> list[None]:
        """Publish the commands sent together: one XADD, or one pipeline of them."""
        assert self.redis is not None, "client not started"
        lock = self.lock
        try:
            if len(cmds) == 1:  # one command costs the client less than a pipeline of one
                await self.redis.xadd(
                    lock.command_stream,
                    {DATA_KEY: encode(cmds[0])},
                    maxlen=lock.command_maxlen,
                    approximate=True,
                )
            else:
                pipe = self.redis.pipeline(transaction=False)
                for cmd in cmds:
                    pipe.xadd(
                        lock.command_stream,
                        {DATA_KEY: encode(cmd)},
                        maxlen=lock.command_maxlen,
                        approximate=True,
                    )
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis", f"cannot publish lock command: {exc}") from exc
        return [None] * len(cmds)

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
        answer: asyncio.Future[LockOutcome] = asyncio.get_running_loop().create_future()
        self._waiting[cmd.request_id] = answer
        self._sent[cmd.request_id] = cmd
        published = False
        try:
            async with asyncio.timeout(timeout / 1000):
                await self._publish(cmd)  # a command not yet sent when time runs out never is
                published = True
                return await answer
        except TimeoutError as exc:
            if not published:
                raise DependencyUnavailable(
                    "redis", f"lock command not published in {timeout} ms"
                ) from exc
            raise DependencyUnavailable(
                "lock-keeper", f"no answer to {action} in {timeout} ms"
            ) from exc
        finally:
            self._waiting.pop(cmd.request_id, None)
            self._sent.pop(cmd.request_id, None)

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
