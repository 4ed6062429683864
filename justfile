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
    uv run --frozen kubescaler-dev up {{ARGS}}

# every check and test: lint, types, the web client's unit tests, every pytest test. The local
# cluster is built meanwhile in the background (from the cache; long only on a fresh machine,
# log in .local/cluster-build.log) and its tests (tests/cluster) run last.
test: setup lint typecheck web
    #!/usr/bin/env bash
    set -uo pipefail
    mkdir -p .local
    uv run --frozen kubescaler-dev cluster build > .local/cluster-build.log 2>&1 &
    build=$!
    trap 'kill $build 2>/dev/null' EXIT
    echo "test: building the local cluster in the background (.local/cluster-build.log)"
    status=0
    (cd frontend && npm test) || status=1
    uv run --frozen pytest --ignore=tests/cluster || status=1
    if wait $build; then
        uv run --frozen pytest tests/cluster || status=1
    else
        echo "test: the local cluster's build failed; the end of its log:"
        tail -40 .local/cluster-build.log
        status=1
    fi
    trap - EXIT
    exit $status

# the local Kubernetes cluster: up (build, start, deploy kubescaler), down, status, apply, build
cluster *ARGS: setup
    uv run --frozen kubescaler-dev cluster {{ARGS}}

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
