"""The lock messages on the wire: what one end writes, the other reads, in either envelope."""

from __future__ import annotations

import msgspec
from faststream.redis.parser.binary import BinaryMessageFormatV1
from lockfakes import Clock, command

from kubescaler.adapters.lockwire import DATA_KEY, decode_outcomes, deliveries, encode, enveloped
from kubescaler.domain.locks import Delivery, outcome


async def test_entries_are_read_bare_or_in_faststreams_envelope() -> None:
    """LockClient writes bare JSON, FastStream publishers their binary envelope: both decode,
    with their entry ids as receipts."""
    cmd = command("refresh", "alice", 3, clock=Clock())
    bare = encode(cmd)
    wrapped = await BinaryMessageFormatV1.encode(
        message=bare, reply_to=None, headers=None, correlation_id="c"
    )
    raw = {"data": [{b"__data__": bare}, {b"__data__": wrapped}], "message_ids": [b"1-0", b"2-0"]}
    assert deliveries(raw) == [Delivery(b"1-0", cmd), Delivery(b"2-0", cmd)]
    assert [enveloped(fields) for fields in raw["data"]] == [False, True]


def test_a_command_entry_as_the_client_writes_it_is_what_the_keeper_reads() -> None:
    """The entry's field is ``__data__`` (FastStream's), the value the command's JSON."""
    cmd = command("acquire", "alice", clock=Clock())
    entry = {DATA_KEY.encode(): encode(cmd)}  # Redis hands the keeper bytes
    assert DATA_KEY == "__data__"
    assert deliveries({"data": entry, "message_ids": [b"7-0"]}) == [Delivery(b"7-0", cmd)]


def test_an_entry_that_is_no_command_is_an_unreadable_delivery() -> None:
    """Not JSON, the wrong shape, or no ``__data__`` at all: kept with its receipt, no command."""
    raw = {
        "data": [{b"__data__": b"nope"}, {b"__data__": b'{"action": "steal"}'}, {b"x": b"1"}],
        "message_ids": [b"1-0", b"2-0"],  # FastStream's test broker may give fewer ids
    }
    assert deliveries(raw) == [Delivery(b"1-0", None), Delivery(b"2-0", None), Delivery(b"", None)]


def test_a_reply_is_one_json_array_of_outcomes() -> None:
    """What the keeper's commit publishes for one requester, the client reads back whole."""
    clock = Clock()
    outs = [
        outcome(command("acquire", "a", clock=clock), "granted", clock(), fencing_token=4),
        outcome(command("release", "a", clock=clock), "released", clock()),
    ]
    payload = encode(outs)
    assert payload.startswith(b"[")
    assert decode_outcomes(payload) == outs
    assert msgspec.json.decode(payload)[0]["fencing_token"] == 4
