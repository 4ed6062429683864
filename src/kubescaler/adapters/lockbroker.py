"""The lock-keeper's FastStream broker: the consumer group's two subscribers, the reply channel.

Both subscribers read the command stream in the keepers' group and hand each batch, decoded
(``adapters/lockwire.py``), to one handler: one reads new commands, up to :data:`BATCH` per
read; the other (``min_idle_time``, i.e. XAUTOCLAIM) takes over commands a dead worker left
pending. Acknowledgement is manual: the handler's commit does it. The reply channel is declared
for the AsyncAPI document only; replies are published by the commit too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from faststream import AckPolicy
from faststream.redis import RedisBroker, RedisSentinelBroker, StreamSub
from faststream.redis.message import FAKE_CONSUMER, RedisBatchStreamMessage

from kubescaler.adapters import lockstate
from kubescaler.adapters.lockwire import deliveries, enveloped
from kubescaler.adapters.redis_client import (
    SentinelConnection,
    credentials,
    sentinel_options,
    worker_retry_options,
)
from kubescaler.domain.locks import Delivery
from kubescaler.settings import Settings
from kubescaler.settings_redis import RedisSettings

#: Most commands one read takes: a batch costs the same round trips whatever its size.
BATCH = 256

#: Which subscriber read a batch: new commands, or ones claimed from a dead worker.
Source = Literal["fresh", "claimed"]
Handler = Callable[[Sequence[Delivery], Source], Awaitable[None]]


async def _entries(msg: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """The subscribers' parser: the message as read, nothing decoded (:func:`deliveries`
    decodes each entry once; FastStream's own parser would decode and re-encode them all).
    Entries in FastStream's envelope (its publishers, its test broker) keep its parser, which
    reads the envelope's headers."""
    data = msg["data"]
    first = data[0] if isinstance(data, list) and data else data
    if first and enveloped(first):
        return await original(msg)
    return RedisBatchStreamMessage(raw_message=msg, body=b"", consumer=FAKE_CONSUMER, group=None)


async def _raw(msg: RedisBatchStreamMessage, _: Any) -> Any:
    """The subscribers' decoder: the handler gets the raw message (entries and their ids)."""
    return msg.raw_message


def _subscribe(
    broker: RedisBroker, stream: StreamSub, handle: Handler, source: Source, title: str, doc: str
) -> None:
    """A subscriber that hands each batch it reads, decoded, to ``handle``. Both are alike but
    for their stream's options: acknowledged by hand (in the commit), the entries read raw."""

    async def on_batch(raw: Any) -> None:
        await handle(deliveries(raw), source)

    broker.subscriber(
        stream=stream,
        ack_policy=AckPolicy.MANUAL,
        parser=_entries,
        decoder=_raw,
        title=title,
        description=doc,
    )(on_batch)


def _broker(redis: RedisSettings) -> RedisBroker:
    """A broker on the state Redis: ``redis.url``, or the primary the Sentinels name (every new
    connection asks them, so after a failover the subscribers read from the new primary)."""
    options: dict[str, Any] = {
        **worker_retry_options(redis.timeout_s),
        "log_level": logging.DEBUG,
        # FastStream's own logger writes its own format and does not propagate: ours does
        # (logs.py: text or JSON like every other line; logs.NOISY keeps its INFO chatter out)
        "logger": logging.getLogger("kubescaler.broker"),
        "apply_types": False,  # the handlers take the raw entries: no injection per message
    }
    if not redis.sentinels:
        options.update(credentials(redis.username, redis.password))
        return RedisBroker(redis.url, **options)
    sentinel = sentinel_options(redis)
    return RedisSentinelBroker(
        sentinels=redis.sentinel_addresses,
        sentinel_master_name=redis.sentinel_master,
        sentinel_kwargs=sentinel.pop("sentinel_kwargs"),
        connection_class=SentinelConnection,
        **sentinel,
        **options,
    )


def build_broker(settings: Settings, name: str, handle: Handler) -> RedisBroker:
    """The broker of worker ``name``: its two subscribers call ``handle`` with each batch."""
    lock = settings.lock
    # A read that fails (Redis stalled past the retries, or down) makes FastStream 0.7 sleep a
    # fixed 5 s before the next one: CONSUME_ERROR_BACKOFF_SECONDS, a module constant of
    # faststream.redis.subscriber.usecases.basic with no broker or subscriber option. So the
    # pause cannot be shortened here; worker_retry_options retries timed-out reads instead, so
    # a short stall never reaches it.
    broker = _broker(settings.redis)
    fresh = StreamSub(
        lock.command_stream,
        group=lock.command_group,
        consumer=name,
        batch=True,
        max_records=BATCH,
        polling_interval=1000,
    )
    claimed = StreamSub(
        lock.command_stream,
        group=lock.command_group,
        consumer=name,
        batch=True,
        min_idle_time=lock.claim_idle_ms,
        polling_interval=min(lock.claim_idle_ms, 1000),
    )

    doc = "LockCommand: acquire, refresh or release a pair (read in batches)."
    _subscribe(broker, fresh, handle, "fresh", "lock-commands", doc)
    doc = "Commands a dead worker left pending (XAUTOCLAIM)."
    _subscribe(broker, claimed, handle, "claimed", "lock-commands-claimed", doc)

    broker.publisher(
        channel=lockstate.reply_channel("{requester}"),
        title="lock-outcomes",
        description="The LockOutcomes of a requester's commands, a JSON array per batch.",
    )
    return broker
