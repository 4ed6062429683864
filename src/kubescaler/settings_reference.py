"""Every setting as `kubescaler config` lists it: its variable, default and meaning.

The descriptions are the ``_doc`` texts of the fields in :mod:`kubescaler.settings`; the
markdown form is the README's configuration table (a unit test keeps the two equal).
"""

from __future__ import annotations

from typing import Any

import msgspec

from kubescaler.settings import SECTIONS, Settings, env_name, struct_fields


def rows() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, top-level ones first."""
    out: list[tuple[str, str, str]] = []
    defaults = Settings()
    sections: list[tuple[str | None, type[msgspec.Struct]]] = [(None, Settings)]
    for section, struct in [*sections, *SECTIONS.items()]:
        obj: Any = defaults if section is None else getattr(defaults, section)
        for f in struct_fields(struct):
            if section is None and f.name in SECTIONS:
                continue
            meta = f.type
            description = ""
            if isinstance(meta, msgspec.inspect.Metadata):
                description = (meta.extra_json_schema or {}).get("description", "")
            default = getattr(obj, f.name)
            shown = ",".join(default) if isinstance(default, list) else str(default)
            out.append((env_name(section, f.name), shown, description))
    return out


def markdown() -> str:
    """The settings as a markdown table (`kubescaler config --markdown`, the README's)."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, default, description in rows():
        shown = f"`{default}`" if default else "(empty)"
        lines.append(f"| `{name}` | {shown} | {description} |")
    return "\n".join(lines)


def text() -> str:
    """The settings one a line, aligned, for a terminal (`kubescaler config`)."""
    listed = rows()
    width = max(len(name) for name, _, _ in listed)
    return "\n".join(
        f"{name:<{width}}  {description} (default: {default or '(empty)'})"
        for name, default, description in listed
    )
