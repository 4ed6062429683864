"""The lock-keeper process surface: health, readiness listing failures, metrics, AsyncAPI."""

from __future__ import annotations

import json
import signal
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient

from kubescaler.adapters.lockclient import LockClient
from kubescaler.entrypoints.asyncapi import ASYNCAPI_PATH, asyncapi_document
from kubescaler.entrypoints.lock_keeper import create_app
from kubescaler.settings import LockSettings, RedisSettings, Settings
from kubescaler_dev import logins
from kubescaler_dev.proc import Proc, free_port
from kubescaler_dev.redis import RedisServer

pytestmark = pytest.mark.integration


async def test_health_ready_and_metrics(
    redis_server: RedisServer, redis_masters: list[RedisServer]
) -> None:
    """Ready holds while a quorum of masters answers; /metrics counts commands."""
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        instance=f"app-{tag}",
        redis=RedisSettings(
            url=redis_server.url,
            lock_urls=[m.url for m in redis_masters] + ["redis://127.0.0.1:1/0"],
            **redis_server.login(),
        ),
        lock=LockSettings(command_stream=f"a:{tag}:cmd", log_stream=f"a:{tag}:log"),
    )
    async with AsyncTestClient(create_app(settings)) as http, LockClient(settings) as locks:
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
        assert ready.status_code == 200  # 3 of 4 masters: still a quorum
        assert ready.json()["checks"]["redlock"] == "ok"
        await locks.acquire(uuid.uuid4(), uuid.uuid4(), "a")
        text = (await http.get("/metrics")).text
        assert (
            'kubescaler_lock_commands_total{action="acquire",path="fresh",result="granted"}' in text
        )
        assert "kubescaler_lock_apply_seconds_bucket" in text
        assert "kubescaler_lock_commands_pending 0.0" in text


def test_committed_asyncapi_document_is_current() -> None:
    """docs/asyncapi.json is what `python -m kubescaler.entrypoints.asyncapi` writes."""
    current = json.loads(ASYNCAPI_PATH.read_text())
    assert current == json.loads(json.dumps(asyncapi_document()))


def test_keeper_process_serves_and_stops_on_sigterm(
    redis_server: RedisServer, redis_masters: list[RedisServer], test_state: Path
) -> None:
    """`lock_keeper.run` becomes ready on its port and exits cleanly on SIGTERM."""
    port = free_port()
    env = {
        "KUBESCALER_REDIS_URL": redis_server.url,
        "KUBESCALER_REDIS_LOCK_URLS": ",".join(m.url for m in redis_masters),
        "KUBESCALER_LOCK_KEEPER_PORT": str(port),
        "KUBESCALER_LOCK_COMMAND_STREAM": f"kubescaler:lock:p:{uuid.uuid4().hex[:8]}:cmd",
        **logins.service_env("lock-keeper", redis_server.passwords),
    }
    code = (
        "from kubescaler.entrypoints.lock_keeper import run; "
        "from kubescaler.settings import load; run(load())"
    )
    log = test_state / f"keeper-{port}.log"
    proc = Proc("lock-keeper", [sys.executable, "-c", code], log, env=env)
    proc.start()
    try:
        proc.wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").is_success, 20)
        assert proc.popen is not None
        proc.signal(signal.SIGTERM)
        # uvicorn runs the lifespan shutdown, then re-raises the signal it caught.
        assert proc.popen.wait(10) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in proc.tail(5)
    finally:
        proc.kill()
