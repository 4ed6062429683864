"""Who may do what on kubescaler's Redis servers: the one table of Redis ACL users.

Every client of a Redis logs in as its own user (``KUBESCALER_REDIS_USERNAME`` /
``KUBESCALER_REDIS_PASSWORD``), and the ``default`` user is off, so a pod that reaches 6379
without a password gets ``NOAUTH`` and one with another role's password gets ``NOPERM`` for
what that role does not do. The rules below were read off the code (each adapter's commands
and every command its Lua scripts call: scripts run with the caller's permissions on the keys
they declare, and every script here declares its keys) and checked with ``ACL LOG`` over the
integration tests, which run against servers started with exactly these users.

Two kinds of server:

- ``state``: the state Redis (command stream, consumer group, applied records, event log,
  launched state, the stream-open rate limits); in dev it is also the one Redlock master.
- ``master``: an independent Redlock master (lock keys, fencing counters, its ready marker).

One source for every place that starts a Redis: devstack (``./dev up``) and the test fixtures
render :func:`acl_file` with the passwords; the manifests mount :func:`rules_file` (rendered
into ``manifests/base/redis-users.acl``, a unit test keeps the two equal) and their start
script puts each user's password hash in front of its rules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

#: Every client may PING and name itself (AUTH and HELLO need no permission). redis-py's CLIENT
#: SETINFO on connect is left out: Redis 7.0 does not know it, so the rule would not load, and
#: redis-py ignores its refusal.
_CLIENT = "+ping +client|setname"

#: What a lock-keeper runs on a Redlock master: the batch vote script (EVALSHA, SCRIPT LOAD
#: after a restart), recovery (its state and note scripts, SCAN and MGET of the counters,
#: SET/DEL of the ready marker) and, inside the scripts, GET SET PTTL PEXPIRE DEL EXISTS TIME.
_MASTER_COMMANDS = (
    "+eval +evalsha +script|load +get +set +del +exists +pttl +pexpire +mget +scan +time"
)

#: The lock-keeper on the state Redis: its broker (XREADGROUP, XAUTOCLAIM, XGROUP CREATE),
#: the group watch (XPENDING), the takeover (heartbeat SET, registry HSET/HGET/HDEL/HGETALL,
#: CLIENT ID/LIST, XINFO CONSUMERS, its scripts' XPENDING XCLAIM XGROUP DELCONSUMER), the
#: ledger (claim, fence and commit scripts: SET GET INCR DEL XADD ZADD ZREM ZREMRANGEBYSCORE
#: PEXPIRE XACK PUBLISH) and, when the state Redis is also the Redlock master, the master's.
_KEEPER_STATE_COMMANDS = (
    f"{_MASTER_COMMANDS} +client|id +client|list +xreadgroup +xautoclaim +xclaim +xack"
    " +xpending +xgroup|create +xgroup|createconsumer +xgroup|delconsumer +xadd +xlen"
    " +xinfo|consumers"
    " +xinfo|groups +xinfo|stream +hset +hget +hdel +hgetall +incr +zadd +zrem"
    " +zremrangebyscore +publish"
)

#: (user, rules after the password) per server kind. Key patterns: ``~`` read and write,
#: ``%R~`` read only; ``&`` channels.
USERS: dict[str, tuple[tuple[str, str], ...]] = {
    "state": (
        (
            "lock-keeper",
            "~kubescaler:lock:* ~kubescaler:launched:* ~kubescaler:launched-profiles:*"
            f" &kubescaler:lock:reply:* {_CLIENT} {_KEEPER_STATE_COMMANDS}",
        ),
        (
            # lock commands in (XADD), outcomes back (SUBSCRIBE), the event log (XREAD), the
            # stream-open limits (its GCRA script: TIME GET SET)
            "stream",
            "~kubescaler:lock:commands %R~kubescaler:lock:log ~kubescaler:ratelimit:*"
            f" &kubescaler:lock:reply:* {_CLIENT} +xadd +xread +subscribe +unsubscribe"
            " +eval +evalsha +script|load +time +get +set",
        ),
        (
            # the launched profiles, read only
            "main",
            f"%R~kubescaler:launched-profiles:* %R~kubescaler:launched:* {_CLIENT}"
            " +zrangebyscore +exists",
        ),
        ("replay", f"%R~kubescaler:lock:log {_CLIENT} +xrange"),
        (
            # KEDA's redis-streams trigger on the command stream (pending entries, lag)
            "keda",
            f"%R~kubescaler:lock:commands {_CLIENT} +xpending +xlen +xinfo|groups"
            " +xinfo|stream +info",
        ),
        # a replica of the state Redis (production, behind Sentinel) syncing from its primary
        ("replica", f"{_CLIENT} +psync +replconf"),
        (
            # the Sentinels: watch, reconfigure and fail over (the command set Redis's Sentinel
            # documentation lists)
            "sentinel",
            "&__sentinel__:hello +client|setname +client|kill +multi +exec +slaveof +replicaof"
            " +ping +info +role +publish +subscribe +config|rewrite +script|kill",
        ),
    ),
    "master": (("lock-keeper", f"~kubescaler:lock:* {_CLIENT} {_MASTER_COMMANDS}"),),
}

#: The ``default`` user: off and without a password, so no connection can act as it - but with
#: every permission. Redis (7.0 here, up to 7.4 and Valkey until their fixes) replays the AOF as
#: ``default`` and re-checks its ACL at each EXEC: a ``default`` with ``-@all`` makes a
#: restarted server silently drop every transaction of its AOF - every script's writes, i.e.
#: every lock key and fencing counter - while plain writes such as the ready marker survive, so
#: a restarted Redlock master votes empty (found by the fault suite's drain; upstream
#: redis/redis#14541). ``tests/integration/test_redis_acl.py`` restarts a server to prove it.
DEFAULT_OFF = "user default off resetpass ~* &* +@all"


def users(kind: str) -> list[str]:
    """The user names of a server ``kind`` (``state`` or ``master``)."""
    return [name for name, _ in USERS[kind]]


def password_env(user: str) -> str:
    """The variable the manifests' start script reads a user's password from."""
    return user.upper().replace("-", "_") + "_PASSWORD"


def acl_file(kind: str, passwords: Mapping[str, str]) -> str:
    """The ACL file of a server ``kind``: every user of the kind with its password's SHA-256
    (never the password itself), ``default`` off. KeyError naming a user without one."""
    lines = [DEFAULT_OFF]
    for name, rules in USERS[kind]:
        digest = hashlib.sha256(passwords[name].encode()).hexdigest()
        lines.append(f"user {name} on #{digest} {rules}")
    return "\n".join(lines) + "\n"


def rules_file(kind: str) -> str:
    """The manifests' form: one ``user rules`` line per user (manifests/base/redis-users.acl
    holds both kinds, under ``# state`` and ``# master``)."""
    return "".join(f"{name} {rules}\n" for name, rules in USERS[kind])
