# kubescaler's recipes. Run them through ./dev (it installs uv, just and the Debian packages).

set shell := ["bash", "-euo", "pipefail", "-c"]

# list the recipes
default:
    @just --list --unsorted

# Python deps from the lock file (Cassandra fetches its jars from Maven on first start)
setup:
    uv sync --frozen --quiet

# the web client: npm dependencies from package-lock.json, then the build into frontend/dist
web:
    cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build

# bring the whole local system up and print its URLs (Ctrl-C stops it)
up *ARGS: setup web
    uv run --frozen kubescaler up {{ARGS}}

# every check and test: lint, types, the web client's unit tests, the local cluster's build
# (from the cache: minutes only on a fresh machine), then every pytest test
test: setup lint typecheck web
    cd frontend && npm test
    uv run --frozen kubescaler cluster build
    uv run --frozen pytest

# the local Kubernetes cluster: up (build, start, deploy kubescaler), down, status, apply, build
cluster *ARGS: setup
    uv run --frozen kubescaler cluster {{ARGS}}

# bounded headless load test of the local system (starts it if it is not up), then replay --verify
loadtest *ARGS: setup
    uv run --frozen python loadtest/run.py {{ARGS}}

# every benchmark, one table (starts its own servers on free ports)
bench: setup
    uv run --frozen python bench/run.py

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
