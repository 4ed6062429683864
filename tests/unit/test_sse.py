"""The stream's events on the wire, and the web client's types generated from them."""

from __future__ import annotations

import random

import msgspec
import pytest

from kubescaler.domain.stream import (
    DataFrame,
    Hello,
    LockLost,
    Payload,
    Reconnect,
    SseParser,
    StreamEvent,
    Superseded,
)
from kubescaler.entrypoints.sse import TYPESCRIPT_PATH, frame, typescript


def test_a_data_event_carries_its_seq_as_the_sse_id() -> None:
    """`data` events: SSE id = seq, so a browser's Last-Event-ID names the last one read."""
    ev = StreamEvent(seq=7, instance="i", ts_ms=1, token=2, dropped=0, payload="x")
    (msg,) = SseParser().feed(frame(ev))
    assert (msg.event, msg.id) == ("data", "7")
    assert msgspec.json.decode(msg.data, type=StreamEvent) == ev


def test_control_events_are_named_versioned_and_only_reconnect_sets_retry() -> None:
    """Each control event goes out under its own name with v=1; retry rides on reconnect."""
    events = [
        Hello(session="s", instance="i", token=1, expires_at_ms=2, user_id="u", profile_id="p"),
        LockLost(reason="gone"),
        Superseded(token=3, held_token=1, reason="newer"),
        Reconnect(reason="draining", session="s"),
    ]
    got = SseParser().feed(b"".join(frame(ev, retry_ms=500) for ev in events))
    assert [(m.event, m.retry) for m in got] == [
        ("hello", None),
        ("lock-lost", None),
        ("superseded", None),
        ("reconnect", 500),
    ]
    assert all(msgspec.json.decode(m.data)["v"] == 1 for m in got)


def test_the_web_clients_event_types_are_generated_from_the_structs() -> None:
    """frontend/src/events.ts is what `python -m kubescaler.entrypoints.sse` writes."""
    assert TYPESCRIPT_PATH.read_text() == typescript()


@pytest.mark.parametrize("instance", ["stream-a", 'we"ird %d \\ name', "ünïcode:8090"])
def test_a_data_frame_is_what_frame_makes_of_the_same_event(instance: str) -> None:
    """DataFrame writes each event in place, byte for byte the SSE of the StreamEvent with the
    same fields, event after event in the one buffer (the longest numbers included)."""
    payload = Payload(64, random.Random(3)).take()
    frames = DataFrame(payload, instance, token=42)
    for seq, ts_ms, dropped in [(1, 1_700_000_000_000, 0), (2**63, 0, 17), (3, 5, 2**63)]:
        got = bytes(frames.frame(seq, ts_ms, dropped))
        event = StreamEvent(
            seq=seq, instance=instance, ts_ms=ts_ms, token=42, dropped=dropped, payload=payload
        )
        assert got == frame(event)
