"""Stream events and the rules of a stream session (pure logic, no I/O)."""

from __future__ import annotations

import base64
import random
import re
from typing import ClassVar

import msgspec

from kubescaler.domain.errors import InvalidInput

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

    Slicing one random pool at random offsets costs a copy per event instead of generating
    fresh randomness at 2 MB/s per client.
    """

    def __init__(self, size: int, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        pool_bytes = max(size * 4, 1 << 20)
        self.pool = base64.b64encode(self.rng.randbytes(pool_bytes * 3 // 4)).decode()
        self.size = size

    def take(self) -> str:
        start = self.rng.randrange(0, len(self.pool) - self.size + 1)
        return self.pool[start : start + self.size]


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


_encode = msgspec.json.Encoder().encode


def sse(
    event: str, data: bytes | str, ident: int | None = None, retry_ms: int | None = None
) -> bytes:
    """One Server-Sent Event on the wire. ``data`` must not contain newlines (JSON here)."""
    head = b""
    if ident is not None:
        head += b"id: %d\n" % ident
    if retry_ms is not None:
        head += b"retry: %d\n" % retry_ms
    body = data.encode() if isinstance(data, str) else data
    return head + b"event: " + event.encode() + b"\ndata: " + body + b"\n\n"


def data_event(ev: StreamEvent) -> bytes:
    return sse("data", _encode(ev), ident=ev.seq)


class ControlEvent(msgspec.Struct, kw_only=True):
    """The `data` of a small event the client acts on; ``event`` is its SSE event name."""

    event: ClassVar[str]


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


def control_event(body: ControlEvent, retry_ms: int | None = None) -> bytes:
    """hello, lock-lost, reconnect, superseded on the wire."""
    return sse(body.event, _encode(body), retry_ms=retry_ms)


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
