"""Apply one lock command: Redlock, fencing token, launched state, event log, exactly once.

Idempotence: before applying, a worker claims ``applied:{request_id}`` with SET NX (an empty
"in flight" value that lapses after half the claim idle time); after applying, one MULTI
stores the outcome there, appends the log record and updates the launched state. A
redelivered command finds the stored outcome and gets it re-sent, unchanged and unlogged.

Fencing: the per-pair counter lives in the stream Redis (one INCR, never expiring, persisted
with the log it belongs to). The INCR runs after the Redlock quorum and must finish inside the
lock's validity; otherwise the grant is dropped. So a later grant, which can only succeed
after the earlier lock expired on its quorum, always INCRs after the earlier one: tokens
increase in grant order.

Supersession: a refresh or release that carries a fencing token below the pair's counter
speaks for a grant the pair has since been given again; it is answered ``lost`` (refresh) or
``released`` without freeing anything (release), with ``superseded_by`` = the newer token.
"""

from __future__ import annotations

import contextlib

import msgspec
from redis.asyncio import Redis

from kubescaler.adapters import lockstate
from kubescaler.adapters.redlock import Redlock, RedlockResult
from kubescaler.domain.locks import (
    LockCommand,
    LockOutcome,
    now_ms,
    outcome,
    record_fields,
    superseded,
)
from kubescaler.settings import LockSettings

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(LockOutcome).decode


class InFlight(Exception):
    """Another worker is applying this request right now; leave the command pending."""


class LockKeeper:
    def __init__(self, redlock: Redlock, state: Redis, lock: LockSettings, worker: str) -> None:
        self.redlock = redlock
        self.state = state
        self.lock = lock
        self.worker = worker
        self.inflight_ms = max(lock.claim_idle_ms // 2, 1)

    async def apply(self, cmd: LockCommand) -> tuple[LockOutcome, bool]:
        """The command's outcome, and whether this call applied it (False: a redelivery)."""
        key = lockstate.applied_key(cmd.request_id)
        if not await self.state.set(key, b"", nx=True, px=self.inflight_ms):
            stored = await self.state.get(key)
            if stored:
                return _decode(stored), False
            raise InFlight(cmd.request_id)
        try:
            out, released = await self._decide(cmd)
            await self._commit(out, released)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.state.delete(key)
            raise
        return out, True

    async def _decide(self, cmd: LockCommand) -> tuple[LockOutcome, bool]:
        now = now_ms()
        if now > cmd.deadline_ms:
            return outcome(cmd, "expired", now, detail=f"deadline {cmd.deadline_ms} passed"), False
        if cmd.action == "acquire":
            return await self._acquire(cmd), False
        if cmd.action == "refresh":
            return await self._refresh(cmd), False
        return await self._release(cmd)

    def _unavailable(self, cmd: LockCommand, got: RedlockResult, why: str = "") -> LockOutcome:
        n = len(self.redlock.masters)
        detail = why or (
            f"lock quorum unavailable: {got.answered}/{n} masters answered, "
            f"{self.redlock.quorum} needed ({got.error})"
        )
        return outcome(cmd, "quorum_unavailable", now_ms(), detail=detail)

    async def _acquire(self, cmd: LockCommand) -> LockOutcome:
        key = lockstate.lock_key(cmd.user_id, cmd.profile_id)
        got = await self.redlock.acquire(key, cmd.owner)
        if got.status == "held":
            at = now_ms()
            return outcome(
                cmd, "denied", at, expires_at_ms=at + got.holder_ttl_ms, holder=got.holder
            )
        if not got.ok:
            return self._unavailable(cmd, got)
        try:
            token = int(await self.state.incr(lockstate.fence_key(cmd.user_id, cmd.profile_id)))
        except BaseException:
            await self.redlock.release(key, cmd.owner)
            raise
        at = now_ms()
        if at >= got.expires_at_ms:
            await self.redlock.release(key, cmd.owner)
            return self._unavailable(cmd, got, "lock validity elapsed before fencing")
        return outcome(cmd, "granted", at, fencing_token=token, expires_at_ms=got.expires_at_ms)

    async def _newest_token(self, cmd: LockCommand) -> int:
        return int(await self.state.get(lockstate.fence_key(cmd.user_id, cmd.profile_id)) or 0)

    async def _refresh(self, cmd: LockCommand) -> LockOutcome:
        key = lockstate.lock_key(cmd.user_id, cmd.profile_id)
        got = await self.redlock.extend(key, cmd.owner)
        if got.status == "held":
            return outcome(cmd, "lost", now_ms(), detail="not the owner any more")
        if not got.ok:
            return self._unavailable(cmd, got)
        # Stamped before the token is read: a grant this refresh did not see is logged later.
        at = now_ms()
        token = await self._newest_token(cmd)
        if superseded(cmd.fencing_token, token):
            # The extend kept the key of the same session, whose newer grant holds it.
            return outcome(
                cmd,
                "lost",
                at,
                fencing_token=cmd.fencing_token,
                superseded_by=token,
                detail=f"superseded by fencing token {token}",
            )
        return outcome(cmd, "refreshed", at, fencing_token=token, expires_at_ms=got.expires_at_ms)

    async def _release(self, cmd: LockCommand) -> tuple[LockOutcome, bool]:
        token = await self._newest_token(cmd)
        if superseded(cmd.fencing_token, token):  # the lock is the newer grant's: keep it
            return outcome(
                cmd,
                "released",
                now_ms(),
                fencing_token=cmd.fencing_token,
                superseded_by=token,
                detail=f"not held: superseded by fencing token {token}",
            ), False
        key = lockstate.lock_key(cmd.user_id, cmd.profile_id)
        got = await self.redlock.release(key, cmd.owner)
        if not got.ok:
            return self._unavailable(cmd, got), False
        held = got.touched > 0
        return outcome(cmd, "released", now_ms(), detail="" if held else "not held"), held

    async def _commit(self, out: LockOutcome, released: bool) -> None:
        pipe = self.state.pipeline(transaction=True)
        pipe.set(lockstate.applied_key(out.request_id), _encode(out), px=self.lock.applied_ttl_ms)
        pipe.xadd(
            self.lock.log_stream,
            record_fields(out, self.worker),  # type: ignore[arg-type]
            maxlen=self.lock.log_maxlen or None,
            approximate=True,
        )
        lockstate.stage_outcome(pipe, out, self.lock.ttl_ms, released)
        await pipe.execute()
