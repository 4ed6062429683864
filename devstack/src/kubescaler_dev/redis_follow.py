"""Start a server of the state Redis as the Sentinels say: ``python -m kubescaler_dev.redis_follow
--port P --sentinels S1,S2,S3 --master NAME [--follow PORT] -- redis-server ARGS...``.

What production's start script does (overlays/production/redis-state.yaml), for the local
topology (:mod:`kubescaler_dev.sentinel`): ask the Sentinels which server is the primary and
start as its replica; start as the primary when they name this server and hold nothing against
it (a restart quicker than their down-after), or when none answers (the first start: then
``--follow`` decides). While they hold this server down or are failing it over, wait (up to
``--wait-s``) for their verdict instead of coming back as a primary: its old replicas would
follow it again, clients asking the Sentinels meanwhile would write to it, and the failover
would drop those writes. Then ``exec`` redis-server (the same pid, for the supervisor).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

LEAD, WAIT = "lead", "wait"
#: What a Sentinel holds against a primary it names
DOUBTS = frozenset({"s_down", "o_down", "failover_in_progress"})


def decide(me: int, named: Sequence[dict[str, str]], follow: int | None) -> str | int:
    """LEAD, WAIT, or the port of the primary to follow, from what the Sentinels that answered
    say of the primary (``SENTINEL MASTER``): the one with the newest configuration counts."""
    if not named:
        return LEAD if follow is None else follow
    newest = max(named, key=lambda state: int(state.get("config-epoch", 0)))
    port = int(newest["port"])
    if port != me:
        return port
    return WAIT if DOUBTS & set(newest["flags"].split(",")) else LEAD


def ask(sentinels: Sequence[int], master: str) -> list[dict[str, str]]:
    """``SENTINEL MASTER master`` of every Sentinel that answers."""
    named = []
    for port in sentinels:
        # no retries: a Sentinel not up yet is passed over (redis-py's default retries would
        # spend seconds on each)
        client = redis.Redis(
            port=port,
            password=os.environ.get("KUBESCALER_DEV_SENTINEL_PASSWORD") or None,
            socket_timeout=0.5,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            state: Any = client.sentinel_master(master)
            named.append({k: str(v) for k, v in state.items()})
        except redis.RedisError:
            continue
        finally:
            client.close()
    return named


def choose(
    me: int, sentinels: Sequence[int], master: str, follow: int | None, wait_s: float
) -> int | None:
    """The port to replicate from, or None to lead; waits out the Sentinels' doubts."""
    deadline = time.monotonic() + wait_s
    while True:
        verdict = decide(me, ask(sentinels, master), follow)
        if verdict == LEAD or (verdict == WAIT and time.monotonic() >= deadline):
            return None
        if verdict != WAIT:
            return int(verdict)
        time.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kubescaler_dev.redis_follow", description=__doc__)
    p.add_argument("--port", type=int, required=True, help="this server's port")
    p.add_argument("--sentinels", required=True, help="the Sentinels' ports, comma-separated")
    p.add_argument("--master", required=True, help="the name they watch the primary under")
    p.add_argument("--follow", type=int, help="the primary when no Sentinel answers")
    p.add_argument("--wait-s", type=float, default=10.0, help="longest wait for a verdict")
    p.add_argument("server", nargs=argparse.REMAINDER, help="-- redis-server and its arguments")
    args = p.parse_args(argv)
    server = args.server[1:] if args.server[:1] == ["--"] else args.server
    sentinels = [int(s) for s in args.sentinels.split(",")]
    primary = choose(args.port, sentinels, args.master, args.follow, args.wait_s)
    if primary is not None:
        server += ["--replicaof", "127.0.0.1", str(primary)]
    print(f"redis_follow: {'replica of ' + str(primary) if primary else 'primary'}", flush=True)
    os.execv(server[0], server)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
