"""How lock messages travel: the command stream's entries and the reply channels' payloads.

One definition for both ends of each:

- A command is an entry of the command stream whose :data:`DATA_KEY` field holds its JSON
  (:data:`encode`). ``LockClient`` writes it bare; a FastStream publisher (its in-memory test
  broker, a tool) wraps it in FastStream's binary envelope (:func:`enveloped`). The keeper
  reads both (:func:`deliveries`).
- The outcomes a batch has for one requester are published as one JSON array
  (:data:`encode` of the list, read back by :data:`decode_outcomes`).

The keeper's storage formats (its commit script's arguments, the stored outcome of a request
id) are the ledger's own, in ``adapters/lockledger.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import msgspec
from faststream.redis.message import DATA_KEY, bDATA_KEY
from faststream.redis.parser.binary import BinaryMessageFormatV1

from kubescaler.domain.locks import Delivery, LockCommand, LockOutcome

__all__ = ["DATA_KEY", "decode_outcomes", "deliveries", "encode", "enveloped"]

log = logging.getLogger(__name__)

#: Commands, outcomes and lists of outcomes as JSON bytes.
encode = msgspec.json.Encoder().encode
#: A reply: the outcomes of one batch for one requester.
decode_outcomes = msgspec.json.Decoder(list[LockOutcome]).decode
_decode_command = msgspec.json.Decoder(LockCommand).decode
_ENVELOPE = BinaryMessageFormatV1.IDENTITY_HEADER


def enveloped(fields: Mapping[bytes, bytes]) -> bool:
    """Whether a command entry is in FastStream's binary envelope (not bare JSON)."""
    return fields.get(bDATA_KEY, b"").startswith(_ENVELOPE)


def deliveries(raw: Any) -> list[Delivery]:
    """The entries of one FastStream stream message (batch or single) as deliveries.

    A command's JSON is the entry's ``__data__`` field, bare or in FastStream's envelope; one
    that does not decode is an unreadable delivery, acknowledged and dropped.
    """
    data = raw["data"]
    entries = data if isinstance(data, list) else [data]
    ids = list(raw.get("message_ids") or [])  # none in FastStream's in-memory test broker
    ids += [b""] * (len(entries) - len(ids))
    out = []
    for receipt, fields in zip(ids, entries, strict=True):
        body = fields.get(bDATA_KEY, b"")
        if body.startswith(_ENVELOPE):
            body = BinaryMessageFormatV1.parse(body)[0]
        try:
            cmd: LockCommand | None = _decode_command(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("dropping an unreadable lock command %s: %.200r", receipt, body)
            cmd = None
        out.append(Delivery(receipt, cmd))
    return out
