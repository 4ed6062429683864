"""The rules of a stream session (pure logic, no I/O).

What a session id may be, what a refresh outcome means, when a newer grant ends a stream, how
drops are counted, and the random text payloads are cut from; ``services/streaming.py`` and
``services/stream_session.py`` apply them. The events a stream sends, and their bytes on the
wire, are ``domain/sse.py``'s.
"""

from __future__ import annotations

import base64
import random
import re

import msgspec

from kubescaler.domain.errors import InvalidInput
from kubescaler.domain.locks import LockOutcome, superseded
from kubescaler.domain.sse import ControlEvent, LockLost, Superseded

_SESSION = re.compile(r"[A-Za-z0-9_-]{8,64}")


def session_id(raw: str | None) -> str | None:
    """A client-chosen session id (8-64 of A-Z a-z 0-9 _ -), or InvalidInput saying so."""
    if raw is None or raw == "":
        return None
    if not _SESSION.fullmatch(raw):
        raise InvalidInput("session must be 8-64 characters of A-Z, a-z, 0-9, '_' or '-'")
    return raw


class Payload:
    """Random base64 text to cut event payloads from.

    Slicing one random pool at random offsets costs a copy per stream (each stream sends its
    own cut, ``domain.sse.DataFrame``) instead of generating fresh randomness per client.
    """

    def __init__(self, size: int, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        pool_bytes = max(size * 4, 1 << 20)
        self.pool = base64.b64encode(self.rng.randbytes(pool_bytes * 3 // 4)).decode()
        self.size = size

    def take(self) -> str:
        start = self.rng.randrange(0, len(self.pool) - self.size + 1)
        return self.pool[start : start + self.size]


# ------------------------------------------------------------------ a session's rules


class Drops:
    """Numbers a stream's events and counts the ones its client could not take.

    ``seq`` counts every event produced, sent or dropped; an event sent carries how many were
    dropped since the previous one sent.
    """

    def __init__(self) -> None:
        self.seq = 0
        self.dropped = 0

    def tick(self, room: bool) -> tuple[int, int] | None:
        """One event is due: (seq, dropped since the last one sent) when the queue has
        ``room``, else None (dropped, counted for the next)."""
        self.seq += 1
        if not room:
            self.dropped += 1
            return None
        dropped, self.dropped = self.dropped, 0
        return self.seq, dropped


class Keep(msgspec.Struct, frozen=True):
    """The lock was refreshed: hold it until ``expires_at_ms``."""

    expires_at_ms: int


class Retry(msgspec.Struct, frozen=True):
    """The refresh got no answer, but the hold outlasts another try soon: stream on."""


class End(msgspec.Struct, frozen=True):
    """The lock is not ours any more: send ``event`` and end the stream."""

    event: ControlEvent


Verdict = Keep | Retry | End


def superseded_event(held_token: int, newest_token: int) -> Superseded | None:
    """The ``superseded`` event when ``newest_token`` is a later grant of the pair than the
    stream's ``held_token``, else None."""
    if not superseded(held_token, newest_token):
        return None
    reason = f"a newer stream of this pair took over (fencing token {newest_token})"
    return Superseded(token=newest_token, held_token=held_token, reason=reason)


def send_deadline_ms(expires_at_ms: int, margin_ms: int) -> int:
    """The last moment (this process' clock) a stream may send data on a hold that the keeper
    said lasts until ``expires_at_ms`` (the keeper's clock): ``margin_ms`` earlier, for what
    the two clocks may differ. A stream checks it on every data event, so one whose process
    was paused past it (a frozen node, a long GC) ends instead of sending on a lapsed lock."""
    return expires_at_ms - margin_ms


def deadline_passed() -> LockLost:
    return LockLost(reason="the lock's deadline passed without a refresh")


def after_refresh(
    out: LockOutcome | None, held_token: int, now_ms: int, expires_at_ms: int, retry_in_ms: int
) -> Verdict:
    """What a refresh's outcome (None: no answer, or undecidable) means for the stream.

    refreshed: keep. No answer: stream on, and try again in ``retry_in_ms``, while the hold
    outlasts that try; else end with ``lock-lost``. lost because a newer grant superseded this
    one: end with ``superseded``. Any other answer (lost, not the owner): end with
    ``lock-lost``.
    """
    if out is None:
        if now_ms + retry_in_ms < expires_at_ms:
            return Retry()
        return End(LockLost(reason="refresh failed"))
    if out.result == "refreshed":
        return Keep(out.expires_at_ms)
    newer = superseded_event(held_token, out.superseded_by)
    if newer is not None:
        return End(newer)
    return End(LockLost(reason=out.detail or out.result))
