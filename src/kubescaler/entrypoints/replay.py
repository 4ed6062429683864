"""`kubescaler replay`: read the lock event log, show timelines and state, verify history.

Reads the log stream with plain XRANGE (or a JSON-lines export with ``--file``), filters by
time/id range, user or pair, then prints a per-pair timeline, the state at ``--at``, JSON
lines (``--jsonl``) or checks mutual exclusion and fencing over the history (``--verify``,
exit status 1 with the violating records when it does not hold).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import msgspec
import redis
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

from kubescaler.adapters.redis_client import credentials
from kubescaler.domain.locks import LockRecord, record_from_fields, state_at, verify
from kubescaler.settings import SettingsError, load
from kubescaler.settings_redis import RedisSettings

PAGE = 1000
_jsonl = msgspec.json.Decoder(LockRecord).decode


def parse_time(text: str) -> int:
    """Epoch ms from epoch ms, a stream id (``ms-seq``) or an ISO 8601 time (UTC if naive)."""
    if re.fullmatch(r"\d+(-\d+)?", text):
        return int(text.split("-", 1)[0])
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def show_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def log_client(url: str | None, state: RedisSettings) -> redis.Redis:
    """``url``'s Redis; without one the state Redis: the primary its Sentinels name (after a
    failover, the new one), else its URL."""
    login = credentials(state.username, state.password)
    if url or not state.sentinels:
        return redis.Redis.from_url(url or state.url, socket_timeout=5, **login)
    found: Any = Sentinel(  # type: ignore[no-untyped-call]
        state.sentinel_addresses,
        sentinel_kwargs={
            "socket_timeout": 5,
            "retry": Retry(NoBackoff(), 0),  # a silent Sentinel: ask the next one
            "password": state.sentinel_password or None,
        },
    ).master_for(
        state.sentinel_master,
        socket_timeout=5,
        db=int(parse_url(state.url).get("db", 0)),  # type: ignore[no-untyped-call]
        **login,
    )
    client: redis.Redis = found
    return client


def from_redis(
    url: str | None,
    stream: str,
    since: int | None,
    until: int | None,
    state: RedisSettings | None = None,
) -> Iterator[LockRecord]:
    client = log_client(url, state or RedisSettings())
    try:
        start, end = "-" if since is None else str(since), "+" if until is None else str(until)
        while True:
            page: list[Any] = client.xrange(stream, start, end, count=PAGE) or []
            for log_id, fields in page:
                yield record_from_fields(fields, log_id.decode())
            if len(page) < PAGE:
                return
            start = "(" + page[-1][0].decode()
    finally:
        client.close()


def from_file(path: Path) -> Iterator[LockRecord]:
    with path.open("rb") as lines:
        for line in lines:
            if line.strip():
                yield _jsonl(line)


def parser() -> argparse.ArgumentParser:
    settings = load()
    p = argparse.ArgumentParser(prog="kubescaler replay", description=__doc__)
    p.add_argument(
        "--redis-url",
        help="Redis holding the log (default: the state Redis, found through "
        "KUBESCALER_REDIS_SENTINELS when they are set, else KUBESCALER_REDIS_URL)",
    )
    p.set_defaults(state=settings.redis)
    p.add_argument("--stream", default=settings.lock.log_stream, help="log stream name")
    p.add_argument("--file", type=Path, help="read a JSON-lines export instead of Redis")
    p.add_argument("--since", type=parse_time, help="from this time or stream id")
    p.add_argument("--until", type=parse_time, help="up to this time or stream id")
    p.add_argument("--user", help="only this user's pairs")
    p.add_argument("--pair", help="only this pair, USER:PROFILE")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--at", type=parse_time, help="print who held what at this time")
    mode.add_argument("--jsonl", action="store_true", help="export the records as JSON lines")
    mode.add_argument(
        "--verify",
        action="store_true",
        help="check mutual exclusion and fencing; exit 1 on a violation",
    )
    return p


def select(args: argparse.Namespace) -> list[LockRecord]:
    source = (
        from_file(args.file)
        if args.file
        else from_redis(args.redis_url, args.stream, args.since, args.until, args.state)
    )
    out = []
    for rec in source:
        if args.since is not None and rec.at_ms < args.since:
            continue
        if args.until is not None and rec.at_ms > args.until:
            continue
        if args.user and str(rec.user_id) != args.user:
            continue
        if args.pair and rec.pair != args.pair:
            continue
        out.append(rec)
    return out


def line(rec: LockRecord) -> str:
    parts = [show_time(rec.at_ms), f"{rec.result:<18}", f"{rec.action:<7}", f"owner={rec.owner}"]
    if rec.fencing_token:
        parts.append(f"token={rec.fencing_token}")
    if rec.expires_at_ms:
        parts.append(f"until={show_time(rec.expires_at_ms)}")
    if rec.holder:
        parts.append(f"holder={rec.holder}")
    if rec.detail:
        parts.append(f"({rec.detail})")
    parts.append(f"worker={rec.worker} id={rec.log_id or '-'}")
    return "  ".join(parts)


def timeline(records: list[LockRecord], out: TextIO) -> None:
    pairs: dict[str, list[LockRecord]] = {}
    for rec in records:
        pairs.setdefault(rec.pair, []).append(rec)
    for pair, recs in sorted(pairs.items()):
        print(f"pair {pair}  ({len(recs)} records)", file=out)
        for rec in sorted(recs, key=lambda r: r.at_ms):
            print("  " + line(rec), file=out)


def run(argv: list[str]) -> int:
    """Entry point of `kubescaler replay`; returns the exit status."""
    try:
        args = parser().parse_args(argv)
    except SettingsError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    try:
        records = select(args)
    except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
        print(
            f"replay: Redis refused the login of user {args.state.username or 'default'!r} "
            f"({exc}): check KUBESCALER_REDIS_USERNAME and KUBESCALER_REDIS_PASSWORD "
            "(the Redis user `replay` reads the log)",
            file=sys.stderr,
        )
        return 2
    except (redis.RedisError, OSError, msgspec.DecodeError, ValueError) as exc:
        print(f"replay: cannot read the log: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout
    if args.jsonl:
        for rec in records:
            out.write(msgspec.json.encode(rec).decode() + "\n")
    elif args.at is not None:
        state = state_at(records, args.at)
        print(f"state at {show_time(args.at)}: {len(state)} pair(s) held", file=out)
        for pair, hold in sorted(state.items()):
            print(
                f"  {pair}  owner={hold.owner} token={hold.token}"
                f" since={show_time(hold.since_ms)} until={show_time(hold.until_ms)}",
                file=out,
            )
    elif args.verify:
        violations = verify(records)
        for v in violations:
            print(f"VIOLATION {v.kind} on {v.pair}: {v.detail}", file=out)
            for rec in v.records:
                print("    " + line(rec), file=out)
        pairs = len({r.pair for r in records})
        verdict = f"{len(violations)} violation(s)" if violations else "no violations"
        print(f"verified {len(records)} records over {pairs} pair(s): {verdict}", file=out)
        return 1 if violations else 0
    else:
        timeline(records, out)
    return 0
