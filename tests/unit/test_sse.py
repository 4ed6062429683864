"""The stream's events on the wire, and the web client's types generated from them."""

from __future__ import annotations

import random

import msgspec
import pytest

from kubescaler.domain.sse import (
    EVENTS,
    DataEvent,
    DataFrame,
    Event,
    Hello,
    LockLost,
    Reconnect,
    SseMessage,
    SseParser,
    Superseded,
    decode,
    frame,
)
from kubescaler.domain.stream import Payload
from kubescaler.entrypoints.typescript import TYPESCRIPT_PATH, typescript

DATA = DataEvent(seq=7, instance="i", ts_ms=1, token=2, dropped=0, payload="x")
CONTROL: list[Event] = [
    Hello(session="s", instance="i", token=1, expires_at_ms=2, user_id="u", profile_id="p"),
    LockLost(reason="gone"),
    Superseded(token=3, held_token=1, reason="newer"),
    Reconnect(reason="draining", session="s"),
]


def test_a_data_event_carries_its_seq_as_the_sse_id() -> None:
    """`data` events: SSE id = seq, so a browser's Last-Event-ID names the last one read."""
    (msg,) = SseParser().feed(frame(DATA))
    assert (msg.event, msg.id) == ("data", "7")
    assert decode(msg) == DATA


def test_every_event_is_named_versioned_first_and_only_reconnect_sets_retry() -> None:
    """Each event goes out under its own name with v=1 as its first field; retry rides on
    reconnect."""
    got = SseParser().feed(b"".join(frame(ev, retry_ms=500) for ev in [DATA, *CONTROL]))
    assert [(m.event, m.retry) for m in got] == [
        ("data", None),
        ("hello", None),
        ("lock-lost", None),
        ("superseded", None),
        ("reconnect", 500),
    ]
    assert all(m.data.startswith('{"v":1,') for m in got)
    assert [decode(m) for m in got] == [DATA, *CONTROL]
    assert sorted(EVENTS) == sorted(m.event for m in got)


def test_a_reader_ignores_fields_a_newer_version_added_and_refuses_unknown_events() -> None:
    """decode: a v2 event with a field this reader does not know still reads; an event name
    the wire does not define is an error, not a silent None."""
    newer = SseMessage(event="lock-lost", data='{"v":2,"reason":"gone","why":"x"}')
    assert decode(newer) == LockLost(v=2, reason="gone")
    with pytest.raises(msgspec.ValidationError):
        decode(SseMessage(event="message", data="{}"))


def test_the_parser_reads_split_chunks_crlf_comments_and_multiline_data() -> None:
    """A frame cut anywhere, CRLF line ends, a comment line and two data lines: one message."""
    raw = b": keep-alive\r\nid: 3\r\nevent: x\r\ndata: a\r\ndata: b\r\nretry: 9\r\n\r\n"
    parser = SseParser()
    got = [m for i in range(len(raw)) for m in parser.feed(raw[i : i + 1])]
    assert got == [SseMessage(event="x", data="a\nb", id="3", retry=9)]


def test_the_web_clients_event_types_are_generated_from_the_structs() -> None:
    """frontend/src/events.ts is what `python -m kubescaler.entrypoints.typescript` writes."""
    assert TYPESCRIPT_PATH.read_text() == typescript()


@pytest.mark.parametrize(
    "instance", ["stream-a", 'we"ird %d \\ name', "ünïcode:8090", 'id: 0\n"seq":0,"payload":""']
)
def test_a_data_frame_is_what_frame_makes_of_the_same_event(instance: str) -> None:
    """DataFrame writes each event in place, byte for byte the SSE of the DataEvent with the
    same fields, event after event in the one buffer (the longest numbers included)."""
    payload = Payload(64, random.Random(3)).take()
    frames = DataFrame(payload, instance, token=42)
    for seq, ts_ms, dropped in [(1, 1_700_000_000_000, 0), (2**63, 0, 17), (3, 5, 2**63)]:
        got = bytes(frames.frame(seq, ts_ms, dropped))
        event = DataEvent(
            seq=seq, instance=instance, ts_ms=ts_ms, token=42, dropped=dropped, payload=payload
        )
        assert got == frame(event)
