"""In-memory stand-ins for a stream hub's ports (base, the lock) and a plain consumer of a
stream's events, for the unit tests of the hub, its sessions and the pump."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import prometheus_client
from lockfakes import Clock

from kubescaler.domain.errors import Conflict
from kubescaler.domain.locks import LockOutcome
from kubescaler.domain.models import Binding
from kubescaler.domain.sse import Hello
from kubescaler.services.stream_session import Item, StreamSession
from kubescaler.services.streaming import StreamHub
from kubescaler.settings import LockSettings, Settings, StreamSettings

SETTINGS = Settings(
    instance="unit",
    lock=LockSettings(ttl_ms=3000, refresh_interval_ms=1000),
    stream=StreamSettings(events_per_s=0, queue_events=2, event_bytes=16),
)
USER = uuid.UUID(int=7)


def out(result: str, owner: str, profile: uuid.UUID, **kw: object) -> LockOutcome:
    return LockOutcome(
        request_id=uuid.uuid4().hex,
        action="acquire" if result in ("granted", "denied") else "refresh",
        result=result,  # type: ignore[arg-type]
        user_id=USER,
        profile_id=profile,
        owner=owner,
        at_ms=0,
        **kw,  # type: ignore[arg-type]
    )


@dataclass
class FakeBase:
    unbound: set[uuid.UUID] = field(default_factory=set)

    async def binding(self, user_id: uuid.UUID, profile_id: uuid.UUID) -> Binding:
        return Binding(user_id=user_id, profile_id=profile_id, bound=profile_id not in self.unbound)


@dataclass
class FakeLocks:
    """Grants tokens 1, 2, ...; ``refresh_with`` answers refreshes (an exception is raised)."""

    clock: Clock
    token: int = 0
    holder: dict[uuid.UUID, str] = field(default_factory=dict)
    refresh_with: LockOutcome | Exception | None = None
    hold_refreshes: asyncio.Event | None = None
    refreshes: list[tuple[uuid.UUID, int]] = field(default_factory=list)
    timeouts: list[int | None] = field(default_factory=list)
    releases: list[tuple[uuid.UUID, int]] = field(default_factory=list)

    async def acquire(self, user_id: uuid.UUID, profile_id: uuid.UUID, owner: str) -> LockOutcome:
        if self.holder.setdefault(profile_id, owner) != owner:
            raise Conflict("held", holder_expires_at_ms=self.clock() + 3000)
        self.token += 1
        return out(
            "granted",
            owner,
            profile_id,
            fencing_token=self.token,
            expires_at_ms=self.clock() + 3000,
        )

    async def refresh(
        self,
        user_id: uuid.UUID,
        profile_id: uuid.UUID,
        owner: str,
        token: int = 0,
        timeout_ms: int | None = None,
    ) -> LockOutcome:
        self.refreshes.append((profile_id, token))
        self.timeouts.append(timeout_ms)
        if self.hold_refreshes is not None:
            await self.hold_refreshes.wait()
        if isinstance(self.refresh_with, Exception):
            raise self.refresh_with
        return self.refresh_with or out(
            "refreshed", owner, profile_id, fencing_token=token, expires_at_ms=self.clock() + 3000
        )

    async def release(
        self, user_id: uuid.UUID, profile_id: uuid.UUID, owner: str, token: int = 0
    ) -> LockOutcome:
        self.releases.append((profile_id, token))
        return out("released", owner, profile_id)


@dataclass
class Hub:
    clock: Clock
    base: FakeBase
    locks: FakeLocks
    hub: StreamHub

    async def stream(self, owner: str = "s1", profile: uuid.UUID | None = None) -> Opened:
        session = await self.hub.open(USER, profile or uuid.uuid4(), owner)
        opened = Opened(session, consume(session))
        assert isinstance(await opened.next(), Hello)
        return opened


@dataclass
class Opened:
    session: StreamSession
    events: AsyncIterator[Item]

    async def next(self) -> Item:
        return await asyncio.wait_for(anext(self.events), 1)

    async def rest(self) -> list[Item]:
        return [item async for item in self.events]


def hub_with(settings: Settings = SETTINGS) -> Hub:
    clock = Clock()
    base, locks = FakeBase(), FakeLocks(clock)
    return Hub(clock, base, locks, StreamHub(settings, base, locks, clock))


def sample(name: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name) or 0.0


async def consume(session: StreamSession) -> AsyncIterator[Item]:
    """A stream's events as a consumer takes them from its queue, from ``hello`` to the end
    (what the pump does, without a server); ends the session however it ends."""
    hello = session.start()
    try:
        yield hello
        while True:
            while not session.queue:
                await session.wait()
            item = session.queue.popleft()
            if item is None:
                return
            yield item
    finally:
        session.close()
