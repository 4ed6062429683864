"""The lock-keeper's AsyncAPI document (docs/asyncapi.json), built from its broker.

Not part of the running process: ``uv run python -m kubescaler.entrypoints.asyncapi`` writes
the document, and a test fails when the committed one is stale. FastStream derives payload
schemas with pydantic, which cannot read msgspec structs, so the payloads are filled in from
msgspec's schema: a command per stream entry, an array of outcomes per reply.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from kubescaler.adapters.lockbroker import Source, build_broker
from kubescaler.domain.locks import Delivery, LockCommand, LockOutcome
from kubescaler.settings import Settings

ASYNCAPI_PATH = Path(__file__).resolve().parents[3] / "docs" / "asyncapi.json"


async def _never(_: Sequence[Delivery], __: Source) -> None:
    raise AssertionError("the documentation broker never consumes")


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI document of the lock-keeper (no connection is made)."""
    from faststream.specification import AsyncAPI

    broker = build_broker(Settings(), "{worker}", _never)
    doc: dict[str, Any] = (
        AsyncAPI(
            broker,
            title="kubescaler lock-keeper",
            version="1.0.0",
            description="Lock commands in, lock outcomes out; see docs/locks.md.",
        )
        .to_specification()
        .to_jsonable()
    )
    (cmd_schema, out_schema), defs = msgspec.json.schema_components(
        [LockCommand, list[LockOutcome]]
    )
    components = doc.setdefault("components", {})
    for name, message in components.get("messages", {}).items():
        message["payload"] = _refs(out_schema if "outcomes" in name.lower() else cmd_schema)
    schemas = {k: _refs(v) for k, v in defs.items()}
    components["schemas"] = schemas  # FastStream's placeholders are no payload any more
    return doc


def _refs(schema: Any) -> Any:
    text = json.dumps(schema).replace('"#/$defs/', '"#/components/schemas/')
    return json.loads(text)


def write_asyncapi(path: Path = ASYNCAPI_PATH) -> str:
    text = json.dumps(asyncapi_document(), indent=2, sort_keys=True) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


if __name__ == "__main__":
    write_asyncapi()
