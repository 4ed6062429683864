"""The stream's wire: every event it sends, as a typed struct with its Server-Sent-Events framing.

Each event is defined here once: :class:`DataEvent` (``data``, about 32 a second) and the
control events a client acts on (:class:`Hello`, :class:`LockLost`, :class:`Reconnect`,
:class:`Superseded`); each carries its schema version ``v`` first (readers ignore fields they
do not know). :func:`frame` writes any of them as SSE bytes (a data event's ``seq`` is its SSE
``id``; a ``reconnect`` carries the SSE ``retry``). A stream's data events are written by
:class:`DataFrame` instead: the same bytes, in place in one buffer, derived from the struct
and held to :func:`frame` by a unit test. The reading side is here too, for clients in Python
(tests, load scripts, the cluster's viewers): :class:`SseParser` and :func:`decode`. The web
client's TypeScript types are generated from these structs (``entrypoints/typescript.py``).

It sits in the domain, below the services that queue these events and the entrypoints that
hand their bytes to a server, because it is pure logic: structs to bytes and back, no I/O and
no framework; and because both a session's rules (``domain/stream.py``: a verdict ends a stream
with one of these events) and clients outside the product's processes need it.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

#: The schema version every event carries as ``v`` (an event whose schema changes in a way a
#: reader must know of overrides its default with a higher one).
EVENT_VERSION = 1


class Event(msgspec.Struct, kw_only=True):
    """What one event of the stream carries as its SSE ``data`` (JSON); ``event`` is its SSE
    event name and ``v`` the version of its schema."""

    event: ClassVar[str]
    v: int = EVENT_VERSION


class DataEvent(Event, kw_only=True):
    """A `data` event: the stream's payload, numbered.

    ``seq`` counts every event the server produced for this stream, sent or dropped;
    ``dropped`` is how many were dropped since the previous event sent.
    """

    event: ClassVar[str] = "data"
    seq: int
    instance: str
    ts_ms: int
    token: int
    dropped: int
    payload: str  # after the per-event numbers: DataFrame writes those in front of it


class ControlEvent(Event, kw_only=True):
    """A small event the client acts on: the stream's start, or why it ends."""


class Hello(ControlEvent, kw_only=True):
    """The stream is granted: whose it is, where it runs, its fencing token and lock expiry."""

    event: ClassVar[str] = "hello"
    session: str
    instance: str
    token: int
    expires_at_ms: int
    user_id: str
    profile_id: str


class LockLost(ControlEvent, kw_only=True):
    """A refresh found the lock gone or taken: the stream ends."""

    event: ClassVar[str] = "lock-lost"
    reason: str


class Reconnect(ControlEvent, kw_only=True):
    """This instance drains: reconnect (after the SSE ``retry``) with the same session."""

    event: ClassVar[str] = "reconnect"
    reason: str
    session: str


class Superseded(ControlEvent, kw_only=True):
    """A newer grant of the same pair (``token``) ended this stream (which held ``held_token``)."""

    event: ClassVar[str] = "superseded"
    token: int
    held_token: int
    reason: str


#: Every event's struct by its SSE event name.
EVENTS: dict[str, type[Event]] = {
    cls.event: cls for cls in (DataEvent, Hello, LockLost, Reconnect, Superseded)
}

# ------------------------------------------------------------------ writing

_encode = msgspec.json.Encoder().encode


def frame(event: Event, retry_ms: int | None = None) -> bytes:
    """An event as SSE bytes: a data event's ``seq`` is its ``id``; ``retry_ms`` goes with a
    ``reconnect`` only."""
    head = b""
    if isinstance(event, DataEvent):
        head += b"id: %d\n" % event.seq
    if retry_ms is not None and isinstance(event, Reconnect):
        head += b"retry: %d\n" % retry_ms
    return head + b"event: %s\ndata: %s\n\n" % (event.event.encode(), _encode(event))


class DataFrame:
    """One stream's ``data`` events on the wire, each written in place in one buffer.

    The bytes :func:`frame` makes of the :class:`DataEvent` with the same fields, without
    building the struct, encoding the payload or copying it per event. The buffer holds the
    stream's payload (base64 text, which JSON needs no escapes for) and the tail once; each
    event formats its numbers into a short head and writes it just before the payload, and the
    frame is a view from the head's start to the end. A view is good until the next
    :meth:`frame`: the server must have taken its bytes by then (an ASGI server copies a body
    into its chunked framing in ``send``).

    The head's template is :func:`frame` of the stream's event with an empty payload, its
    per-event numbers (``id``, ``seq``, ``ts_ms``, ``dropped``) made ``%d``: the struct, not
    this class, says which fields an event has and in what order.
    """

    _PER_EVENT = ("seq", "ts_ms", "dropped")
    _ROOM = 4 * 21  # the most digits (and a sign) the four numbers of a head take

    def __init__(self, payload: str, instance: str, token: int) -> None:
        blank = DataEvent(seq=0, instance=instance, ts_ms=0, token=token, dropped=0, payload="")
        template = frame(blank).replace(b"%", b"%%")
        # A JSON string escapes its quotes, so '"seq":0' and the like can only be the keys.
        template = template.replace(b"id: 0\n", b"id: %d\n", 1)
        for name in self._PER_EVENT:
            template = template.replace(b'"%s":0' % name.encode(), b'"%s":%%d' % name.encode(), 1)
        head, _, tail = template.rpartition(b'"payload":""')
        self.head = head + b'"payload":"'
        self.start = len(self.head) + self._ROOM
        self.buffer = bytearray(self.start) + payload.encode("ascii") + b'"' + tail
        self.view = memoryview(self.buffer)

    def frame(self, seq: int, ts_ms: int, dropped: int) -> memoryview:
        """The event's bytes: its head written in front of the payload and tail."""
        head = self.head % (seq, seq, ts_ms, dropped)
        at = self.start - len(head)
        self.buffer[at : self.start] = head
        return self.view[at:]


# ------------------------------------------------------------------ reading


class SseMessage(msgspec.Struct):
    """One Server-Sent Event as a client reads it."""

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


def decode(message: SseMessage) -> Event:
    """A stream's message as its typed event; msgspec's errors when it is none of them."""
    kind = EVENTS.get(message.event)
    if kind is None:
        raise msgspec.ValidationError(f"no stream event is named {message.event!r}")
    return msgspec.json.decode(message.data, type=kind)
