"""The locust load scripts on the test stack: streams, counted refusals, exclusive locks."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from kubescaler.entrypoints import replay
from kubescaler_dev.nginx import Nginx
from kubescaler_dev.redis import RedisServer
from kubescaler_dev.services import Service

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_mixed_scenario_streams_counts_refusals_and_keeps_locks_exclusive(
    gateway: Nginx,
    main_service: Service,
    redis_server: RedisServer,
    tmp_path: Path,
    redis_login: Callable[[str], None],
) -> None:
    """A 15 s headless evening-peak run: stream bytes and 409s reported, replay --verify passes."""
    with httpx.Client(base_url=main_service.url, timeout=60) as main:
        r = main.post(
            "/testdata",
            params={"users": 40, "profiles": 20, "shared_users": 12, "profiles_per_shared_user": 2},
        )
        assert r.status_code == 201, r.text
    since_ms = int(time.time() * 1000)
    prefix = tmp_path / "mixed"
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "loadtest" / "evening_peak.py"),
        "--headless",
        "--host",
        gateway.url,
        "-t",
        "15s",
        "--stop-timeout",
        "3",
        "--peak-users",
        "6",
        "--hold-s",
        "6",
        "--hot-pairs",
        "1",
        "--csv",
        str(prefix),
        "--only-summary",
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    with Path(f"{prefix}_stats.csv").open() as f:
        stats = {row["Name"]: row for row in csv.DictReader(f)}
    streamed = stats["stream: stream"]
    assert int(streamed["Request Count"]) >= 1
    assert float(streamed["Average Content Size"]) > 0
    assert int(stats["contend: refused 409"]["Request Count"]) >= 1
    assert int(stats["Aggregated"]["Failure Count"]) == 0
    streams = json.loads(Path(f"{prefix}_streams.json").read_text())
    assert streams["mb_received"] > 0
    assert streams["refused_409"] >= 1
    assert streams["lock_lost"] == 0

    redis_login("replay")
    assert replay.run(["--redis-url", redis_server.url, "--since", str(since_ms), "--verify"]) == 0
