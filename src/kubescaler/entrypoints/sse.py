"""The stream's events on the wire (Server-Sent Events), and the web client's types for them.

:func:`frame` turns a stream's typed events (``domain/stream.py``) into SSE bytes: a data
event carries its ``seq`` as the SSE ``id``; a control event is named by its struct; a
``reconnect`` carries the ``retry`` the client should wait. (A stream's data events are
written by ``domain.stream.DataFrame``: the same bytes this makes of a ``StreamEvent``; how
they reach the server is ``sse_stream.py``'s.) :func:`typescript` writes the same structs as
TypeScript interfaces for the web client (``frontend/src/events.ts``, written by
``uv run python -m kubescaler.entrypoints.sse``; a test fails when it is stale).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from kubescaler.domain.stream import (
    ControlEvent,
    Hello,
    LockLost,
    Reconnect,
    StreamEvent,
    Superseded,
)

_encode = msgspec.json.Encoder().encode
CONTROL_EVENTS: tuple[type[ControlEvent], ...] = (Hello, LockLost, Reconnect, Superseded)
TYPESCRIPT_PATH = Path(__file__).resolve().parents[3] / "frontend" / "src" / "events.ts"


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


def frame(event: StreamEvent | ControlEvent, retry_ms: int | None = None) -> bytes:
    """A stream event as SSE bytes; ``retry_ms`` goes with a ``reconnect``."""
    if isinstance(event, StreamEvent):
        return sse("data", _encode(event), ident=event.seq)
    return sse(
        event.event, _encode(event), retry_ms=retry_ms if event.event == "reconnect" else None
    )


# ------------------------------------------------------------------ TypeScript types

_TS_HEADER = """\
// Generated from the msgspec structs in src/kubescaler/domain/stream.py by
// `uv run python -m kubescaler.entrypoints.sse`. Do not edit: a test fails when it is stale."""


def _ts_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if kind == "array":
        return f"{_ts_type(schema['items'])}[]"
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    return {"integer": "number", "number": "number", "string": "string", "boolean": "boolean"}[
        str(kind)
    ]


def _interface(name: str, schema: dict[str, Any], doc: str) -> str:
    """Every field is required: the server encodes defaults too."""
    lines = [f"/** {doc} */", f"export interface {name} {{"]
    lines += [f"  {field}: {_ts_type(spec)};" for field, spec in schema["properties"].items()]
    lines.append("}")
    return "\n".join(lines)


def typescript() -> str:
    """The TypeScript interfaces of every stream event, and the SSE name of each control event."""
    structs: list[tuple[str, type[msgspec.Struct]]] = [("DataEvent", StreamEvent)]
    structs += [(cls.__name__, cls) for cls in CONTROL_EVENTS]
    _, defs = msgspec.json.schema_components([cls for _, cls in structs])
    parts = [_TS_HEADER]
    for name, cls in structs:
        doc = " ".join((cls.__doc__ or name).split()).replace("``", "`")
        parts.append(_interface(name, defs[cls.__name__], doc))
    names = ", ".join(f'{cls.__name__}: "{cls.event}"' for cls in CONTROL_EVENTS)
    parts.append(
        "/** The SSE event name of each control event. */\n"
        f"export const EVENT_NAMES = {{ {names} }} as const;"
    )
    return "\n\n".join(parts) + "\n"


def write_typescript(path: Path = TYPESCRIPT_PATH) -> str:
    text = typescript()
    path.write_text(text)
    return text


if __name__ == "__main__":
    write_typescript()
