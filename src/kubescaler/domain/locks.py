"""Lock commands, their outcomes and the lock event log, plus the history verifier.

A requester publishes a :class:`LockCommand`; a lock-keeper reads it as a :class:`Delivery`
(the command and its stream entry's id), applies it and answers with a :class:`LockOutcome`,
which it also appends to the event log as a :class:`LockRecord` of plain string fields
(:func:`record_fields` / :func:`record_from_fields`). Every message carries a version ``v`` so
replay can read old records: readers ignore unknown fields and fill missing ones with
defaults. No I/O here (how they travel: ``adapters/lockwire.py``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Literal, NamedTuple

import msgspec

#: 2: quorum fencing - an outcome says on how many masters its token landed
#: (``fenced_on``), and a command may carry a trace context (``traceparent``, W3C; empty
#: until tracing is on). Version 1 records read as fenced on 0 masters, with no trace.
VERSION = 2

Action = Literal["acquire", "refresh", "release"]
Result = Literal[
    "granted", "denied", "refreshed", "lost", "released", "expired", "quorum_unavailable"
]


class LockMessage(msgspec.Struct, kw_only=True, frozen=True):
    """Base of every lock message: ``v`` is the schema version of the record."""

    v: int = VERSION


class LockCommand(LockMessage, frozen=True):
    """Take, refresh or release the lock of one (user, profile) pair for ``owner``.

    ``fencing_token`` is the token of the grant a refresh or release speaks for (0: none, no
    check); a holder whose token is no longer the pair's newest is superseded.
    """

    action: Action
    user_id: uuid.UUID
    profile_id: uuid.UUID
    owner: str
    request_id: str
    deadline_ms: int
    reply_to: str = ""
    fencing_token: int = 0
    traceparent: str = ""

    @property
    def pair(self) -> str:
        return pair_name(self.user_id, self.profile_id)


class Delivery(NamedTuple):
    """One entry of the command stream as read: its id (``receipt``, to acknowledge) and its
    command (None: unreadable, acknowledged and dropped)."""

    receipt: bytes | str
    cmd: LockCommand | None


class LockOutcome(LockMessage, frozen=True):
    """What a lock-keeper did with one command.

    ``expires_at_ms`` is the owner's hold end (validity) for granted/refreshed, and the
    current holder's expiry for denied. ``fencing_token`` is 0 when there is none.
    ``superseded_by`` is the pair's newest token when a refresh or release spoke for an older
    grant (lost / released-not-held because the pair was granted again), else 0.
    """

    request_id: str
    action: Action
    result: Result
    user_id: uuid.UUID
    profile_id: uuid.UUID
    owner: str
    at_ms: int
    fencing_token: int = 0
    expires_at_ms: int = 0
    holder: str = ""
    detail: str = ""
    superseded_by: int = 0
    #: granted under quorum fencing: the masters its token was written back to (0: the
    #: stream fencing's INCR, or no grant)
    fenced_on: int = 0

    @property
    def pair(self) -> str:
        return pair_name(self.user_id, self.profile_id)


class LockRecord(LockOutcome, frozen=True):
    """One entry of the lock event log: an outcome plus the worker that applied it."""

    worker: str = ""
    log_id: str = ""


def pair_name(user_id: uuid.UUID, profile_id: uuid.UUID) -> str:
    return f"{user_id}:{profile_id}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def superseded(held_token: int, newest_token: int) -> bool:
    """Whether the holder of grant ``held_token`` was superseded by a later grant of its pair.

    A pair granted again (the same session re-entering, or a hand-over) has one live holder:
    the newest token. 0 means "no token known" and is never superseded.
    """
    return 0 < held_token < newest_token


def outcome(cmd: LockCommand, result: Result, at_ms: int, **extra: object) -> LockOutcome:
    return LockOutcome(
        request_id=cmd.request_id,
        action=cmd.action,
        result=result,
        user_id=cmd.user_id,
        profile_id=cmd.profile_id,
        owner=cmd.owner,
        at_ms=at_ms,
        **extra,  # type: ignore[arg-type]
    )


_INT_FIELDS = {"v", "at_ms", "fencing_token", "expires_at_ms", "superseded_by", "fenced_on"}


def record_fields(out: LockOutcome, worker: str) -> dict[str, str]:
    """The plain string fields of the log entry for ``out`` (XRANGE-readable)."""
    fields = {k: str(v) for k, v in msgspec.structs.asdict(out).items()}
    fields["worker"] = worker
    fields.pop("log_id", None)
    return fields


def record_from_fields(fields: Mapping[bytes | str, bytes | str], log_id: str = "") -> LockRecord:
    """Read a log entry back, ignoring fields this version does not know."""
    known = set(LockRecord.__struct_fields__)
    raw: dict[str, object] = {}
    for key, value in fields.items():
        name = key.decode() if isinstance(key, bytes) else key
        if name not in known:
            continue
        text = value.decode() if isinstance(value, bytes) else value
        raw[name] = int(text) if name in _INT_FIELDS else text
    raw["log_id"] = log_id
    return msgspec.convert(raw, LockRecord, strict=False)


# ---------------------------------------------------------------- history


class Hold(msgspec.Struct, kw_only=True):
    """Who holds a pair according to the log, and until when."""

    owner: str
    token: int
    until_ms: int
    since_ms: int


class Violation(msgspec.Struct, kw_only=True, frozen=True):
    kind: Literal["overlap", "token", "superseded"]
    pair: str
    detail: str
    records: list[LockRecord]


def _ordered(records: Iterable[LockRecord]) -> dict[str, list[LockRecord]]:
    by_pair: dict[str, list[LockRecord]] = {}
    for rec in records:
        by_pair.setdefault(rec.pair, []).append(rec)
    for recs in by_pair.values():
        recs.sort(key=lambda r: r.at_ms)  # stable: log order breaks ties
    return by_pair


def _step(hold: Hold | None, rec: LockRecord) -> Hold | None:
    """The hold after ``rec`` (no checking)."""
    if rec.result == "granted" or (
        rec.result == "refreshed"
        and (hold is None or hold.owner == rec.owner or hold.until_ms <= rec.at_ms)
    ):
        since = hold.since_ms if hold is not None and hold.owner == rec.owner else rec.at_ms
        return Hold(
            owner=rec.owner,
            token=rec.fencing_token or (hold.token if hold else 0),
            until_ms=rec.expires_at_ms,
            since_ms=since,
        )
    if (
        rec.result in ("released", "lost")
        and hold is not None
        and hold.owner == rec.owner
        and not superseded(rec.fencing_token, hold.token)  # an older grant's end, not this one's
    ):
        return None
    return hold


def verify(records: Iterable[LockRecord]) -> list[Violation]:
    """Check mutual exclusion and fencing over a whole history.

    Per pair, in time order: a grant or refresh to one owner while another owner's hold is
    still running (not released, lost or past its ``expires_at``) is an overlap; every grant's
    fencing token must be greater than every earlier grant's on that pair; a refresh that kept
    a superseded grant alive (its token below a later grant's) is a second live holder.
    """
    violations: list[Violation] = []
    for pair, recs in _ordered(records).items():
        hold: Hold | None = None
        holder_rec: LockRecord | None = None
        last_token = 0
        last_grant: LockRecord | None = None
        for rec in recs:
            if rec.result in ("granted", "refreshed"):
                if (
                    hold is not None
                    and holder_rec is not None
                    and hold.owner != rec.owner
                    and rec.at_ms < hold.until_ms
                ):
                    violations.append(
                        Violation(
                            kind="overlap",
                            pair=pair,
                            records=[holder_rec, rec],
                            detail=f"{rec.owner} {rec.result} at {rec.at_ms} while {hold.owner} "
                            f"held it until {hold.until_ms}",
                        )
                    )
                if (
                    rec.result == "refreshed"
                    and last_grant is not None
                    and rec.at_ms > last_grant.at_ms
                    and superseded(rec.fencing_token, last_token)
                ):
                    violations.append(
                        Violation(
                            kind="superseded",
                            pair=pair,
                            records=[last_grant, rec],
                            detail=f"token {rec.fencing_token} refreshed at {rec.at_ms} after "
                            f"token {last_token} was granted",
                        )
                    )
                if rec.result == "granted":
                    if rec.fencing_token <= last_token and last_grant is not None:
                        violations.append(
                            Violation(
                                kind="token",
                                pair=pair,
                                records=[last_grant, rec],
                                detail=f"token {rec.fencing_token} after {last_token}",
                            )
                        )
                    last_token = max(last_token, rec.fencing_token)
                    last_grant = rec
            new = _step(hold, rec)
            if new is not None and (
                hold is None or new.owner != hold.owner or rec.result == "granted"
            ):
                holder_rec = rec
            hold = new
    return violations


def state_at(records: Iterable[LockRecord], at_ms: int) -> dict[str, Hold]:
    """Who held each pair at ``at_ms``, reconstructed from the log."""
    state: dict[str, Hold] = {}
    for pair, recs in _ordered(records).items():
        hold: Hold | None = None
        for rec in recs:
            if rec.at_ms > at_ms:
                break
            hold = _step(hold, rec)
        if hold is not None and hold.until_ms > at_ms:
            state[pair] = hold
    return state
