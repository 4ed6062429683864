"""Stream events and the rules of a stream session (pure logic, no I/O).

The events a stream sends are typed structs: :class:`StreamEvent` (the ``data`` events) and
the control events (:class:`Hello`, :class:`LockLost`, :class:`Reconnect`,
:class:`Superseded`), each with a schema version ``v``. ``entrypoints/sse.py`` frames them as
Server-Sent Events and generates the web client's TypeScript types from them. The rules a
session follows — what a refresh outcome means, when a newer grant ends it, how drops are
counted — are the functions below; ``services/streaming.py`` applies them.
"""

from __future__ import annotations

import base64
import random
import re
from typing import ClassVar

import msgspec

from kubescaler.domain.errors import InvalidInput
from kubescaler.domain.locks import LockOutcome, superseded

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
    own cut, :class:`DataFrame`) instead of generating fresh randomness per client.
    """

    def __init__(self, size: int, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        pool_bytes = max(size * 4, 1 << 20)
        self.pool = base64.b64encode(self.rng.randbytes(pool_bytes * 3 // 4)).decode()
        self.size = size

    def take(self) -> str:
        start = self.rng.randrange(0, len(self.pool) - self.size + 1)
        return self.pool[start : start + self.size]


class DataFrame:
    """One stream's ``data`` events on the wire, each written in place in one buffer.

    The same bytes ``entrypoints.sse.frame`` makes of a :class:`StreamEvent` (SSE ``id`` = seq,
    the JSON fields in the struct's order, the payload last), without building the struct,
    encoding the payload or copying it per event. The buffer holds the stream's payload (base64
    text, which JSON needs no escapes for) and the tail once; each event formats its numbers
    into a short head and writes it just before the payload, and the frame is a view from the
    head's start to the end. A view is good until the next :meth:`frame`: the server must have
    taken its bytes by then (an ASGI server copies a body into its chunked framing in ``send``).
    """

    _TAIL = b'"}\n\n'
    _ROOM = 4 * 21  # the most digits (and a sign) the four numbers of a head take

    def __init__(self, payload: str, instance: str, token: int) -> None:
        self.head = (
            b'id: %%d\nevent: data\ndata: {"seq":%%d,"instance":%s,"ts_ms":%%d,"token":%d,'
            b'"dropped":%%d,"payload":"'
            % (msgspec.json.encode(instance).replace(b"%", b"%%"), token)
        )
        self.start = len(self.head) + self._ROOM
        self.buffer = bytearray(self.start) + payload.encode("ascii") + self._TAIL
        self.view = memoryview(self.buffer)

    def frame(self, seq: int, ts_ms: int, dropped: int) -> memoryview:
        """The event's bytes: its head written in front of the payload and tail."""
        head = self.head % (seq, seq, ts_ms, dropped)
        at = self.start - len(head)
        self.buffer[at : self.start] = head
        return self.view[at:]


class StreamEvent(msgspec.Struct, kw_only=True):
    """The `data` of one stream event.

    ``seq`` counts every event the server produced for this stream, sent or dropped;
    ``dropped`` is how many were dropped since the previous event sent.
    """

    seq: int
    instance: str
    ts_ms: int
    token: int
    dropped: int
    payload: str


EVENT_VERSION = 1


class ControlEvent(msgspec.Struct, kw_only=True):
    """The `data` of a small event the client acts on; ``event`` is its SSE event name and
    ``v`` the version of its schema (readers ignore fields they do not know)."""

    event: ClassVar[str]
    v: int = EVENT_VERSION


class Hello(ControlEvent):
    """The stream is granted: whose it is, where it runs, its fencing token and lock expiry."""

    event: ClassVar[str] = "hello"
    session: str
    instance: str
    token: int
    expires_at_ms: int
    user_id: str
    profile_id: str


class LockLost(ControlEvent):
    """A refresh found the lock gone or taken: the stream ends."""

    event: ClassVar[str] = "lock-lost"
    reason: str


class Reconnect(ControlEvent):
    """This instance drains: reconnect (after the SSE ``retry``) with the same session."""

    event: ClassVar[str] = "reconnect"
    reason: str
    session: str


class Superseded(ControlEvent):
    """A newer grant of the same pair (``token``) ended this stream (which held ``held_token``)."""

    event: ClassVar[str] = "superseded"
    token: int
    held_token: int
    reason: str


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


class SseMessage(msgspec.Struct):
    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SseParser:
    """Incremental Server-Sent-Events parser for clients (tests, load scripts)."""

    def __init__(self) -> None:
        self._buf = b""
        self._fields: dict[str, str] = {}
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SseMessage]:
        self._buf += chunk
        out: list[SseMessage] = []
        while (end := self._buf.find(b"\n")) >= 0:
            line, self._buf = self._buf[:end].rstrip(b"\r").decode(), self._buf[end + 1 :]
            if line == "":
                if self._data or self._fields:
                    retry = self._fields.get("retry")
                    out.append(
                        SseMessage(
                            event=self._fields.get("event", "message"),
                            data="\n".join(self._data),
                            id=self._fields.get("id"),
                            retry=int(retry) if retry else None,
                        )
                    )
                self._fields, self._data = {}, []
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._data.append(value)
            elif name:
                self._fields[name] = value
        return out
