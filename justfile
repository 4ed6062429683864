# kubescaler's recipes. Run them through ./dev (it installs uv, just and the Debian packages).

set shell := ["bash", "-euo", "pipefail", "-c"]

# list the recipes
default:
    @just --list --unsorted

# Python deps from the lock file (Cassandra fetches its jars from Maven on first start)
setup:
    uv sync --frozen --quiet

# bring the whole local system up and print its URLs (Ctrl-C stops it)
up *ARGS: setup
    uv run --frozen kubescaler up {{ARGS}}

# every check and test: lint, types, unit, integration and end-to-end
test: setup lint typecheck
    uv run --frozen pytest

# only the pure-logic unit tests (no servers)
unit: setup
    uv run --frozen pytest tests/unit

# ruff lint and format check
lint:
    uv run --frozen ruff check .
    uv run --frozen ruff format --check .

# mypy --strict over src/
typecheck:
    uv run --frozen mypy

# format the code
fmt:
    uv run --frozen ruff format .
    uv run --frozen ruff check --fix .

# list every KUBESCALER_* setting
config: setup
    uv run --frozen kubescaler config
