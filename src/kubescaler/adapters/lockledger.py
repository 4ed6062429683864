"""The lock-keeper's side of the stream Redis: claims, fencing counters, one commit per batch.

One script call each, whatever the batch's size (a script runs atomically, like MULTI, and
costs the client one command to encode and one reply to parse instead of one per key):

- :meth:`LockLedger.claim` takes ``applied:{request_id}`` with SET NX for every command (an
  empty "in flight" value that lapses after half the claim idle time) and reads the pair's
  fencing counter; a request id already taken returns what it holds instead.
- :meth:`LockLedger.fence` INCRs the counters of the pairs granted, in order.
- :meth:`LockLedger.commit` stores every outcome under its request id, appends the log
  records, updates the launched state (``lockstate``'s layout), acknowledges the stream
  entries and publishes the replies, all at once: a reply never goes out before its outcome is
  stored and logged, and an entry is never acknowledged without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import msgspec
from redis.asyncio import Redis

from kubescaler.adapters import lockstate
from kubescaler.adapters.lockwire import encode
from kubescaler.domain.lockrules import Claim, on_claim
from kubescaler.domain.locks import LockCommand, LockOutcome, record_fields
from kubescaler.settings import LockSettings

_stored = msgspec.json.Decoder(LockOutcome).decode

# KEYS: n applied keys, then n fence keys; ARGV[1]: in-flight PX. Per command {1, counter}
# when this call took the claim, {0, stored} when the request id was already taken.
_CLAIM = """
local n = #KEYS / 2
local out = {}
for i = 1, n do
  if redis.call('SET', KEYS[i], '', 'NX', 'PX', ARGV[1]) then
    out[i] = {1, redis.call('GET', KEYS[n + i]) or '0'}
  else
    out[i] = {0, redis.call('GET', KEYS[i]) or ''}
  end
end
return out
"""


_FENCE = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('INCR', key) end
return out
"""

# KEYS: log stream, command stream, then per outcome its applied, marker and user-set keys.
# ARGV: group, lock TTL, applied TTL, log maxlen (0: none), outcome count, then per outcome:
# stored JSON, state ("hold", "unmark" or ""), owner, profile id, expires at, at, and its log
# fields as one JSON array of strings; then the ack count and ids; then the reply count and
# (channel, payload) pairs.
_COMMIT = """
local group, ttl, kept, maxlen = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local a = 6
for i = 1, tonumber(ARGV[5]) do
  local applied, marker, users = KEYS[3 * i], KEYS[3 * i + 1], KEYS[3 * i + 2]
  local state, owner, profile = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local expires, at = ARGV[a + 4], ARGV[a + 5]
  local fields = cjson.decode(ARGV[a + 6])
  redis.call('SET', applied, ARGV[a], 'PX', kept)
  if maxlen > 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields))
  else
    redis.call('XADD', KEYS[1], '*', unpack(fields))
  end
  if state == 'hold' then
    redis.call('SET', marker, owner, 'PX', ttl)
    redis.call('ZADD', users, expires, profile)
    redis.call('ZREMRANGEBYSCORE', users, '-inf', '(' .. at)
    redis.call('PEXPIRE', users, ttl)
  elseif state == 'unmark' and redis.call('GET', marker) == owner then
    redis.call('DEL', marker)
    redis.call('ZREM', users, profile)
  end
  a = a + 7
end
local nacks = tonumber(ARGV[a])
if nacks > 0 then redis.pcall('XACK', KEYS[2], group, unpack(ARGV, a + 1, a + nacks)) end
a = a + nacks + 1
for i = 1, tonumber(ARGV[a]) do
  redis.call('PUBLISH', ARGV[a + 2 * i - 1], ARGV[a + 2 * i])
end
return 1
"""


class LockLedger:
    def __init__(self, redis: Redis, lock: LockSettings, worker: str) -> None:
        self.redis = redis
        self.lock = lock
        self.worker = worker
        self.inflight_ms = max(lock.claim_idle_ms // 2, 1)
        self._claim = redis.register_script(_CLAIM)
        self._fence = redis.register_script(_FENCE)
        self._commit = redis.register_script(_COMMIT)

    async def ping(self) -> None:
        """A readiness check: the stream Redis answers (raises what the client raised)."""
        await self.redis.ping()

    async def claim(self, cmds: Sequence[LockCommand]) -> list[Claim]:
        """Claim every command's request id; what each claim means is :func:`on_claim`'s."""
        if not cmds:
            return []
        keys = [lockstate.applied_key(c.request_id) for c in cmds]
        keys += [lockstate.fence_key(c.user_id, c.profile_id) for c in cmds]
        got = await self._claim(keys=keys, args=[self.inflight_ms])
        claims: list[Claim] = []
        for took, value in got:
            if int(took):
                claims.append(on_claim(True, None, int(value)))
            else:
                claims.append(on_claim(False, _stored(value) if value else None, 0))
        return claims

    async def unclaim(self, cmds: Sequence[LockCommand]) -> None:
        """Give claims back (this worker failed before committing): best effort."""
        if cmds:
            with contextlib.suppress(Exception):
                await self.redis.delete(*(lockstate.applied_key(c.request_id) for c in cmds))

    async def fence(self, cmds: Sequence[LockCommand]) -> list[int]:
        """INCR the fencing counter of each command's pair, in order: the grants' tokens."""
        got = await self._fence(keys=[lockstate.fence_key(c.user_id, c.profile_id) for c in cmds])
        return [int(t) for t in got]

    async def commit(
        self,
        applied: Sequence[tuple[LockOutcome, bool]],
        acks: Sequence[bytes | str],
        replies: Mapping[str, Sequence[LockOutcome]],
    ) -> None:
        """Store and log each applied outcome (``True``: it freed its pair), change the
        launched state, XACK ``acks`` and publish each channel's replies: one atomic script."""
        lock = self.lock
        keys: list[str] = [lock.log_stream, lock.command_stream]
        args: list[bytes | str | int] = [
            lock.command_group,
            lock.ttl_ms,
            lock.applied_ttl_ms,
            lock.log_maxlen,
            len(applied),
        ]
        for out, freed in applied:
            keys += [
                lockstate.applied_key(out.request_id),
                lockstate.marker_key(out.user_id, out.profile_id),
                lockstate.user_key(out.user_id),
            ]
            fields = [part for item in record_fields(out, self.worker).items() for part in item]
            args += [encode(out), lockstate.state_change(out, freed), out.owner]
            args += [str(out.profile_id), out.expires_at_ms, out.at_ms, encode(fields)]
        receipts = [a for a in acks if a]
        args += [len(receipts), *receipts, len(replies)]
        for channel, outs in replies.items():
            args += [channel, encode(list(outs))]
        await self._commit(keys=keys, args=args)
