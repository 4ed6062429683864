"""The web client's types for the stream's events (``frontend/src/events.ts``).

Not part of the running process: ``uv run python -m kubescaler.entrypoints.typescript`` writes
the file from the structs of ``domain/sse.py``, and a test fails when the committed one is
stale. Each event is a TypeScript interface (the data event's is ``DataEvent``, as in Python),
and ``EVENT_NAMES`` holds the SSE name of each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from kubescaler.domain.sse import EVENTS

TYPESCRIPT_PATH = Path(__file__).resolve().parents[3] / "frontend" / "src" / "events.ts"

_TS_HEADER = """\
// Generated from the msgspec structs in src/kubescaler/domain/sse.py by
// `uv run python -m kubescaler.entrypoints.typescript`. Do not edit: a test fails when it is
// stale."""


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
    """The TypeScript interface of every stream event, and the SSE name of each."""
    structs = list(EVENTS.values())
    _, defs = msgspec.json.schema_components(structs)
    parts = [_TS_HEADER]
    for cls in structs:
        doc = " ".join((cls.__doc__ or cls.__name__).split()).replace("``", "`")
        parts.append(_interface(cls.__name__, defs[cls.__name__], doc))
    names = ", ".join(f'{cls.__name__}: "{cls.event}"' for cls in structs)
    parts.append(
        "/** The SSE event name of each event. */\n"
        f"export const EVENT_NAMES = {{ {names} }} as const;"
    )
    return "\n\n".join(parts) + "\n"


def write_typescript(path: Path = TYPESCRIPT_PATH) -> str:
    text = typescript()
    path.write_text(text)
    return text


if __name__ == "__main__":
    write_typescript()
