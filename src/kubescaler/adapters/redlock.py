"""Redlock over N independent Redis masters: many operations per round trip, votes back.

Each master stores, per pair, ``owner#bound``: the owner's session id (so any stateless worker
can extend or release a lock another worker took, and the same owner re-acquiring is granted)
and a lower bound of its fencing token (so a release by an older grant of the same session
cannot free a newer one). :meth:`Redlock.vote` sends a whole batch of operations to every
master at once, one script call per master (the client encodes one command and parses one
reply, whatever the batch's size), each bounded by a timeout; a master that errors or times
out is a silent vote, never a hang. What the votes mean is decided in
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

from kubescaler.adapters.lockstate import FENCE_PREFIX
from kubescaler.adapters.redis_client import credentials, packing_in_c
from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.domain.lockrules import (
    VALUE_SEPARATOR,
    Round,
    Tally,
    Undo,
    Vote,
    VoteKind,
    VoteOp,
    quorum,
    tally,
)
from kubescaler.domain.locks import now_ms

# One script runs a whole batch on a master. KEYS: the master's ready marker, then per op its
# lock key and its pair's fencing counter. ARGV: the TTL, then per op its kind (a: acquire, e:
# extend, r: release, f: fence), owner and token. Per op it returns {won, pttl, holder,
# counter}: won 1 or 0; a refused acquire adds the holder and its remaining TTL; counter is
# the pair's fencing counter after the op. A master without its ready marker came back empty:
# it answers {-1} and does nothing (it abstains until the keepers have caught it up).
# Values are owner#bound; a value written before bounds existed is all owner, bound 0.
#   acquire: set if absent or the owner's own (re-entrant, and then the holder is the owner),
#            keeping the higher bound;
#   extend:  the owner's only, and not by a grant older than the counter: TTL reset, bound
#            raised to the token;
#   release: the owner's only, and only at or above its bound and the counter (token 0:
#            unchecked);
#   fence:   the counter raised to the token, where it was below it.
_BATCH = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then return {{-1}} end
local function parse(v)
  local o, t = string.match(v, '^(.*){VALUE_SEPARATOR}(%d+)$')
  if not o then return v, 0 end
  return o, tonumber(t)
end
local ttl = ARGV[1]
local out = {{}}
for i = 1, (#KEYS - 1) / 2 do
  local key, fence = KEYS[2 * i], KEYS[2 * i + 1]
  local kind, owner, token = ARGV[3 * i - 1], ARGV[3 * i], tonumber(ARGV[3 * i + 1])
  local counter = tonumber(redis.call('GET', fence) or '0') or 0
  local won, pttl, holder = 0, 0, ''
  if kind == 'f' then
    if counter < token then
      redis.call('SET', fence, token)
      counter, won = token, 1
    end
  else
    local v = redis.call('GET', key)
    local o, t = nil, 0
    if v then o, t = parse(v) end
    if kind == 'a' then
      if v and o ~= owner then
        pttl, holder = redis.call('PTTL', key), o
      else
        if t > token then token = t end
        redis.call('SET', key, owner .. '{VALUE_SEPARATOR}' .. token, 'PX', ttl)
        won = 1
        if v then holder = o end
      end
    elseif v and o == owner and (token == 0 or token >= counter) then
      if kind == 'e' then
        if token > t then
          redis.call('SET', key, owner .. '{VALUE_SEPARATOR}' .. token, 'PX', ttl)
        else
          redis.call('PEXPIRE', key, ttl)
        end
        won = 1
      elseif token == 0 or token >= t then
        redis.call('DEL', key)
        won = 1
      end
    end
  end
  out[4 * i - 3], out[4 * i - 2], out[4 * i - 1], out[4 * i] = won, pttl, holder, counter
end
return out
"""
_KIND: dict[VoteKind, str] = {"acquire": "a", "extend": "e", "release": "r", "fence": "f"}
#: On every master: present once it votes (see redlock_recovery.py).
READY_KEY = "kubescaler:lock:ready"
#: What a master answers for every op while it abstains.
RECOVERING = "recovering: it came back empty and abstains until it has caught up"


def master_client(url: str, timeout_s: float, username: str = "", password: str = "") -> Redis:
    """A client for one master, logged in as ``username``: short socket timeouts, one
    immediate retry on a dropped connection only (a pooled connection a restarted master
    closed). A master that is down or slow is not retried: Redlock decides by quorum, and each
    call is bounded anyway."""
    client = Redis.from_url(
        url,
        **credentials(username, password),
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
        decode_responses=False,
    )
    packing_in_c(client.connection_pool)
    return client


class Redlock:
    def __init__(
        self,
        masters: list[Redis],
        ttl_ms: int,
        drift_factor: float,
        call_timeout_ms: int,
        key_prefix: str = "",
        fence_prefix: str = FENCE_PREFIX,
    ) -> None:
        """``key_prefix`` goes before every op's key (the keeper's: ``lockstate.LOCK_PREFIX``),
        ``fence_prefix`` before its pair's fencing counter (``lockstate.FENCE_PREFIX``)."""
        self.masters = masters
        self.key_prefix = key_prefix
        self.fence_prefix = fence_prefix
        self.ttl_ms = ttl_ms
        self.drift_factor = drift_factor
        self.call_timeout_s = call_timeout_ms / 1000
        self.quorum = quorum(len(masters))
        self._sha = hashlib.sha1(_BATCH.encode(), usedforsecurity=False).hexdigest()

    async def _on(self, master: Redis, ops: Sequence[VoteOp]) -> list[Any]:
        """Every op on one master in one script call; a script it lost is loaded again."""
        keys = [READY_KEY]
        for op in ops:
            keys += [self.key_prefix + op.key, self.fence_prefix + op.key]
        args: list[str | int] = [self.ttl_ms]
        for op in ops:
            args += [_KIND[op.kind], op.owner, op.token]
        try:
            return list(await master.evalsha(self._sha, len(keys), *keys, *args))
        except NoScriptError:  # a restarted master forgot it
            await master.script_load(_BATCH)
            return list(await master.evalsha(self._sha, len(keys), *keys, *args))

    async def _bounded(self, master: Redis, ops: Sequence[VoteOp]) -> list[Any] | BaseException:
        try:
            async with asyncio.timeout(self.call_timeout_s):
                return await self._on(master, ops)
        except Exception as exc:
            return exc

    async def vote(self, ops: Sequence[VoteOp]) -> Round:
        """Send ``ops`` to every master at once and collect each master's vote on each op."""
        started_ms, start = now_ms(), time.monotonic()
        per_master = await asyncio.gather(*(self._bounded(m, ops) for m in self.masters))
        elapsed_ms = int((time.monotonic() - start) * 1000)
        per_master = [_abstained(r) for r in per_master]
        votes = [[_vote(op.kind, replies, i) for replies in per_master] for i, op in enumerate(ops)]
        return Round(votes, started_ms, elapsed_ms)

    async def fence(self, ops: Sequence[VoteOp]) -> Round:
        """A round of fence ops (each grant's token written back): a vote, timed apart."""
        return await self.vote(ops)

    async def undo(self, ops: Sequence[Undo]) -> None:
        """Each op on the masters it names only (a failed acquire's release where it took the
        key), one script call per master; best effort: a silent master lets its key lapse."""
        calls = []
        for m, master in enumerate(self.masters):
            if mine := [op for op, on in ops if m in on]:
                calls.append(self._bounded(master, mine))
        await asyncio.gather(*calls)

    def tally(self, got: Round, i: int) -> Tally:
        """What the votes on op ``i`` of ``got`` decide, and how long a quorum is valid."""
        return tally(got.votes[i], got.started_ms, got.elapsed_ms, self.ttl_ms, self.drift_factor)

    async def one(self, op: VoteOp) -> Tally:
        return self.tally(await self.vote([op]), 0)

    async def acquire(self, key: str, owner: str, bound: int = 0) -> Tally:
        """Take ``key`` for ``owner``; a failed attempt is released where it took the key."""
        got = await self.one(VoteOp("acquire", key, owner, bound))
        if not got.ok or got.valid_ms <= 0:
            await self.undo([(VoteOp("release", key, owner, bound), got.took)])
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

    async def ready(self) -> None:
        """A readiness check: DependencyUnavailable("redlock") unless a quorum answers PING."""
        down = await self.ping()
        if len(self.masters) - len(down) < self.quorum:
            raise DependencyUnavailable("redlock", "lock quorum unavailable: " + ", ".join(down))

    async def aclose(self) -> None:
        for master in self.masters:
            await master.aclose()


class Recovering(Exception):
    """A master's answer while it abstains (it came back empty)."""


def _abstained(replies: list[Any] | BaseException) -> list[Any] | BaseException:
    if isinstance(replies, list) and replies and int(replies[0]) == -1:
        return Recovering(RECOVERING)
    return replies


def _vote(kind: VoteKind, replies: list[Any] | BaseException, i: int) -> Vote:
    """One master's answer to op ``i`` as a vote."""
    if isinstance(replies, BaseException):
        return Vote(answer="silent", error=f"{type(replies).__name__}: {replies}")
    won, pttl, holder, counter = replies[4 * i : 4 * i + 4]
    if int(won) == 1:
        return Vote(
            answer="won", counter=int(counter), reentered=kind == "acquire" and bool(holder)
        )
    if kind == "acquire":
        name = holder.decode() if isinstance(holder, bytes) else str(holder)
        return Vote(answer="refused", holder=name, ttl_ms=int(pttl), counter=int(counter))
    return Vote(answer="refused", counter=int(counter))


def _address(client: Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
