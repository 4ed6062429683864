"""The layout shows the architecture: imports point down (domain < adapters < services <
entrypoints), never up; and no product module imports the local tooling (kubescaler_dev)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "kubescaler"
RANK = {"domain": 0, "adapters": 1, "services": 2, "entrypoints": 3}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("layer", list(RANK))
def test_layer_imports_only_layers_below(layer: str) -> None:
    wrong = []
    for path in sorted((SRC / layer).rglob("*.py")):
        for module in _imports(path):
            parts = module.split(".")
            upward = len(parts) > 1 and parts[1] in RANK and RANK[parts[1]] > RANK[layer]
            if parts[0] == "kubescaler" and upward:
                wrong.append(f"{path.relative_to(SRC)} imports {module}")
            if parts[:2] == ["kubescaler", "cli"]:
                wrong.append(f"{path.relative_to(SRC)} imports {module}")
    assert wrong == []


def test_no_product_module_imports_the_local_tooling() -> None:
    """cli.py, settings.py and every layer: the product wheel must work without kubescaler_dev,
    so a lazy import inside a function is as wrong as one at the top."""
    wrong = [
        f"{path.relative_to(SRC)} imports {module}"
        for path in sorted(SRC.rglob("*.py"))
        for module in _imports(path)
        if module.split(".")[0] == "kubescaler_dev"
    ]
    assert wrong == []
