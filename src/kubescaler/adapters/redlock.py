"""Redlock over N independent Redis masters: many operations per round trip, votes back.

Each master stores, per pair, ``owner#bound``: the owner's session id (so any stateless worker
can extend or release a lock another worker took, and the same owner re-acquiring is granted)
and a lower bound of its fencing token (so a release by an older grant of the same session
cannot free a newer one). :meth:`Redlock.vote` sends a whole batch of operations to every
master at once, one pipeline per master, each bounded by a timeout; a master that errors or
times out is a silent vote, never a hang. What the votes mean is decided in
``domain/lockrules.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from kubescaler.domain.lockrules import (
    VALUE_SEPARATOR,
    Round,
    Tally,
    Vote,
    VoteKind,
    VoteOp,
    quorum,
    tally,
)

# The value's owner and bound; a value written before bounds existed is all owner, bound 0.
_PARSE = f"""
local function parse(v)
  local o, t = string.match(v, '^(.*){VALUE_SEPARATOR}(%d+)$')
  if not o then return v, 0 end
  return o, tonumber(t)
end
"""
# ARGV owner, bound, ttl. {1} when set or re-entered (keeping the higher bound), else
# {0, pttl, holder}.
_ACQUIRE = (
    _PARSE
    + f"""
local v = redis.call('GET', KEYS[1])
local bound = tonumber(ARGV[2])
if v then
  local o, t = parse(v)
  if o ~= ARGV[1] then return {{0, redis.call('PTTL', KEYS[1]), o}} end
  if t > bound then bound = t end
end
redis.call('SET', KEYS[1], ARGV[1] .. '{VALUE_SEPARATOR}' .. bound, 'PX', ARGV[3])
return {{1}}
"""
)
# ARGV owner, token, ttl. 1 when the owner holds it (TTL reset, bound raised to the token).
_EXTEND = (
    _PARSE
    + f"""
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local o, t = parse(v)
if o ~= ARGV[1] then return 0 end
local token = tonumber(ARGV[2])
if token > t then
  redis.call('SET', KEYS[1], o .. '{VALUE_SEPARATOR}' .. token, 'PX', ARGV[3])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""
)
# ARGV owner, token (0: unchecked). 1 when deleted: the owner's, and no newer grant's bound.
_RELEASE = (
    _PARSE
    + """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local o, t = parse(v)
if o ~= ARGV[1] then return 0 end
local token = tonumber(ARGV[2])
if token > 0 and token < t then return 0 end
return redis.call('DEL', KEYS[1])
"""
)
_SCRIPTS: dict[VoteKind, str] = {"acquire": _ACQUIRE, "extend": _EXTEND, "release": _RELEASE}


def master_client(url: str, timeout_s: float) -> Redis:
    """A client for one master: short socket timeouts, one immediate retry on a dropped
    connection only (a pooled connection a restarted master closed). A master that is down
    or slow is not retried: Redlock decides by quorum, and each call is bounded anyway."""
    return Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
        decode_responses=False,
    )


class Redlock:
    def __init__(
        self,
        masters: list[Redis],
        ttl_ms: int,
        drift_factor: float,
        call_timeout_ms: int,
        key_prefix: str = "",
    ) -> None:
        """``key_prefix`` goes before every op's key (the keeper's: ``lockstate.LOCK_PREFIX``)."""
        self.masters = masters
        self.key_prefix = key_prefix
        self.ttl_ms = ttl_ms
        self.drift_factor = drift_factor
        self.call_timeout_s = call_timeout_ms / 1000
        self.quorum = quorum(len(masters))
        self._sha = {kind: _sha1(text) for kind, text in _SCRIPTS.items()}

    def _args(self, op: VoteOp) -> tuple[Any, ...]:
        if op.kind == "release":
            return (op.owner, op.token)
        return (op.owner, op.token, self.ttl_ms)

    async def _on(self, master: Redis, ops: Sequence[VoteOp]) -> list[Any]:
        """Every op on one master in one pipeline; a script the master lost is loaded again."""
        replies = await self._send(master, ops)
        lost = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if lost:  # a restarted master forgot the scripts: load them, send those ops again
            for text in _SCRIPTS.values():
                await master.script_load(text)
            again = await self._send(master, [ops[i] for i in lost])
            for i, reply in zip(lost, again, strict=True):
                replies[i] = reply
        return replies

    async def _send(self, master: Redis, ops: Sequence[VoteOp]) -> list[Any]:
        if len(ops) == 1:  # one command costs the client less than a pipeline of one
            (op,) = ops
            try:
                return [
                    await master.evalsha(
                        self._sha[op.kind], 1, self.key_prefix + op.key, *self._args(op)
                    )
                ]
            except NoScriptError as exc:
                return [exc]
        pipe = master.pipeline(transaction=False)
        for op in ops:
            pipe.evalsha(self._sha[op.kind], 1, self.key_prefix + op.key, *self._args(op))
        return list(await pipe.execute(raise_on_error=False))

    async def _bounded(self, master: Redis, ops: Sequence[VoteOp]) -> list[Any] | BaseException:
        try:
            async with asyncio.timeout(self.call_timeout_s):
                return await self._on(master, ops)
        except Exception as exc:
            return exc

    async def vote(self, ops: Sequence[VoteOp]) -> Round:
        """Send ``ops`` to every master at once and collect each master's vote on each op."""
        started_ms, start = time.time_ns() // 1_000_000, time.monotonic()
        per_master = await asyncio.gather(*(self._bounded(m, ops) for m in self.masters))
        elapsed_ms = int((time.monotonic() - start) * 1000)
        votes = [[_vote(op.kind, replies, i) for replies in per_master] for i, op in enumerate(ops)]
        return Round(votes, started_ms, elapsed_ms)

    def tally(self, got: Round, i: int) -> Tally:
        """What the votes on op ``i`` of ``got`` decide, and how long a quorum is valid."""
        return tally(got.votes[i], got.started_ms, got.elapsed_ms, self.ttl_ms, self.drift_factor)

    async def one(self, op: VoteOp) -> Tally:
        return self.tally(await self.vote([op]), 0)

    async def acquire(self, key: str, owner: str, bound: int = 0) -> Tally:
        """Take ``key`` for ``owner``; a failed attempt is released where it won."""
        got = await self.one(VoteOp("acquire", key, owner, bound))
        if not got.ok or got.valid_ms <= 0:
            await self.release(key, owner, bound)
        return got

    async def extend(self, key: str, owner: str, token: int = 0) -> Tally:
        """Reset the TTL where ``owner`` still holds ``key``."""
        return await self.one(VoteOp("extend", key, owner, token))

    async def release(self, key: str, owner: str, token: int = 0) -> Tally:
        """Delete ``key`` wherever ``owner`` holds it at a bound no higher than ``token``."""
        return await self.one(VoteOp("release", key, owner, token))

    async def ping(self) -> list[str]:
        """Addresses of the masters that do not answer PING."""

        async def one(master: Redis) -> BaseException | None:
            try:
                async with asyncio.timeout(self.call_timeout_s):
                    await master.ping()
            except Exception as exc:
                return exc
            return None

        replies = await asyncio.gather(*(one(m) for m in self.masters))
        return [_address(m) for m, r in zip(self.masters, replies, strict=True) if r is not None]

    async def aclose(self) -> None:
        for master in self.masters:
            await master.aclose()


def _vote(kind: VoteKind, replies: list[Any] | BaseException, i: int) -> Vote:
    """One master's answer to op ``i`` as a vote."""
    if isinstance(replies, BaseException):
        return Vote(answer="silent", error=f"{type(replies).__name__}: {replies}")
    reply = replies[i]
    if isinstance(reply, Exception):
        return Vote(answer="silent", error=f"{type(reply).__name__}: {reply}")
    if kind == "acquire":
        if int(reply[0]) == 1:
            return Vote(answer="won")
        holder = reply[2].decode() if isinstance(reply[2], bytes) else str(reply[2])
        return Vote(answer="refused", holder=holder, ttl_ms=int(reply[1]))
    return Vote(answer="won" if int(reply) == 1 else "refused")


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _address(client: Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
