"""A bounded headless load test of the local system: `just loadtest`.

Reuses the system at --host when it answers, else starts it (kubescaler's Stack on its default
ports, state in .local/) and stops it afterwards. Makes sure there are bound pairs to stream
(creates test data when /main/suggested has too few), runs the evening-peak scenario headless
for --duration seconds, writes CSV and HTML reports to loadtest/reports/, prints a summary, and
verifies the lock event log of the run with `kubescaler replay --verify`. Exits non-zero when
locust recorded failures or mutual exclusion did not hold.

    uv run python loadtest/run.py [--duration 60] [--peak-users 8] [--host URL]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from kubescaler.entrypoints import replay
from kubescaler.settings import load
from kubescaler_dev.proc import StartError, port_open
from kubescaler_dev.stack import Stack

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REPORTS = HERE / "reports"
TESTDATA = {
    "users": 2000,
    "profiles": 200,
    "users_per_profile": 5,
    "shared_users": 100,
    "profiles_per_shared_user": 2,
}


def ensure_pairs(host: str, need: int) -> int:
    """Bound pairs available to stream; creates test data when there are fewer than ``need``."""
    with httpx.Client(base_url=host, timeout=120) as http:
        pairs = sum(
            len(s["profiles"]) for s in http.get("/main/suggested").raise_for_status().json()
        )
        if pairs < need:
            print(f"loadtest: {pairs} bound pairs, creating test data {TESTDATA}", flush=True)
            r = http.post("/main/testdata", params=TESTDATA)
            if r.status_code != 201:
                sys.exit(f"loadtest: POST /main/testdata answered {r.status_code}: {r.text}")
            print(f"loadtest: created {r.json()}", flush=True)
            pairs = sum(len(s["profiles"]) for s in http.get("/main/suggested").json())
    return pairs


def locust(host: str, duration: int, peak: int, prefix: Path, extra: list[str]) -> int:
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(HERE / "evening_peak.py"),
        "--headless",
        "--host",
        host,
        "-t",
        f"{duration}s",
        "--stop-timeout",
        "5",
        "--peak-users",
        str(peak),
        "--csv",
        str(prefix),
        "--html",
        f"{prefix}.html",
        "--only-summary",
        *extra,
    ]
    print("loadtest: " + " ".join(argv[2:]), flush=True)
    return subprocess.run(argv, cwd=ROOT, check=False, timeout=duration + 120).returncode


def rows(prefix: Path) -> list[dict[str, str]]:
    with Path(f"{prefix}_stats.csv").open() as f:
        return list(csv.DictReader(f))


def summarize(prefix: Path) -> dict[str, object]:
    streams = json.loads(Path(f"{prefix}_streams.json").read_text())
    table = {r["Name"]: r for r in rows(prefix)}
    total = table.get("Aggregated", {})
    login = table.get("/main/login/[user]", {})
    return {
        **streams,
        "requests": int(total.get("Request Count", 0)),
        "failures": int(total.get("Failure Count", 0)),
        "login_ms_p50": login.get("50%"),
        "login_ms_p99": login.get("99%"),
    }


def main() -> int:
    settings = load()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--host", default=f"http://127.0.0.1:{settings.gateway_port}")
    p.add_argument("--duration", type=int, default=60, help="seconds of load (default 60)")
    p.add_argument("--peak-users", type=int, default=8, help="users at the peak (default 8)")
    p.add_argument("--redis-url", default=settings.redis.url, help="Redis holding the lock log")
    p.add_argument("--name", default="loadtest", help="report file prefix")
    opts, extra = p.parse_known_args()
    stack = None
    gateway = urlsplit(opts.host)
    if not port_open(gateway.port or 80, gateway.hostname or "127.0.0.1"):
        if gateway.hostname != "127.0.0.1" or gateway.port != settings.gateway_port:
            sys.exit(f"loadtest: nothing answers at {opts.host}")
        state = (ROOT / settings.local_state_dir).resolve()
        print(f"loadtest: starting the local system (state in {state})", flush=True)
        stack = Stack(settings, state)
        try:
            stack.start()
        except StartError as exc:
            sys.exit(f"loadtest: could not start the local system: {exc}")
    try:
        pairs = ensure_pairs(opts.host, need=opts.peak_users * 2 + 10)
        print(f"loadtest: {pairs} bound pairs", flush=True)
        REPORTS.mkdir(exist_ok=True)
        prefix = REPORTS / opts.name
        since_ms = int(time.time() * 1000)
        code = locust(opts.host, opts.duration, opts.peak_users, prefix, extra)
        summary = summarize(prefix)
        width = max(map(len, summary))
        print("\nloadtest summary")
        for key, value in summary.items():
            print(f"  {key:<{width}}  {value}")
        print(f"  reports: {prefix}_stats.csv, {prefix}.html, {prefix}_streams.json")
        print(f"\nloadtest: replay --verify of the lock log since {since_ms}", flush=True)
        verified = replay.run(["--redis-url", opts.redis_url, "--since", str(since_ms), "--verify"])
    finally:
        if stack is not None:
            print("loadtest: stopping the local system it started", flush=True)
            stack.stop()
    if verified != 0:
        print("loadtest: FAILED: the lock log shows overlapping holds", flush=True)
        return 1
    if code != 0:
        print(f"loadtest: FAILED: locust exited {code} (failures above)", flush=True)
        return 1
    print("loadtest: ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
