"""The README's first command: `kubescaler up` brings the whole system up behind one entry point.

It runs as a real process on free ports with its own state folder, exactly as `./dev up` runs
it, and is stopped with Ctrl-C (SIGINT) at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kubescaler.devstack.proc import free_port, port_open
from kubescaler.domain.stream import SseParser

pytestmark = pytest.mark.e2e


class Up:
    def __init__(self, proc: subprocess.Popen[str], gateway: str, ports: list[int]) -> None:
        self.proc = proc
        self.gateway = gateway
        self.ports = ports
        self.output: list[str] = []


@pytest.fixture(scope="module")
def up(test_state: Path) -> Iterator[Up]:
    ports = {
        name: free_port()
        for name in (
            "GATEWAY_PORT",
            "BASE_PORT",
            "MAIN_PORT",
            "STREAM_PORT",
            "LOCK_KEEPER_PORT",
            "CASSANDRA_PORT",
            "CASSANDRA_STORAGE_PORT",
            "redis",
        )
    }
    ports["STREAM_PORT_2"] = ports["STREAM_PORT"] + 1  # the second instance counts up
    if port_open(ports["STREAM_PORT_2"]):
        pytest.fail("the port after the first stream port is taken; run again")
    env = {
        **os.environ,
        **{
            f"KUBESCALER_{k}": str(v)
            for k, v in ports.items()
            if k.isupper() and k != "STREAM_PORT_2"
        },
        "KUBESCALER_REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
        "KUBESCALER_LOCAL_STATE_DIR": str(test_state / "up"),
        "KUBESCALER_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubescaler.cli", "up", "--streams", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    running = Up(proc, f"http://127.0.0.1:{ports['GATEWAY_PORT']}", list(ports.values()))
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        running.output.append(line)
        if "Ctrl-C stops it." in line:
            break
        assert time.monotonic() < deadline, "".join(running.output)
    else:
        pytest.fail("kubescaler up exited:\n" + "".join(running.output))
    yield running
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)


def test_up_prints_the_urls(up: Up) -> None:
    text = "".join(up.output)
    assert "kubescaler is up" in text
    assert f"{up.gateway}/main/profiles" in text
    assert f"{up.gateway}/index/{{user_id}}/{{profile_id}}" in text


def test_test_data_then_profiles_and_suggested_through_the_entry_point(up: Up) -> None:
    """After POST /main/testdata, /main/profiles is JSON and /main/suggested lists users with
    two or more profiles; a bound pair streams through the same entry point."""
    with httpx.Client(base_url=up.gateway, timeout=60) as http:
        r = http.post("/main/testdata", params={"users": 50, "profiles": 10, "shared_users": 5})
        assert r.status_code == 201, r.text
        profiles = http.get("/main/profiles").json()
        assert len(profiles) == 10
        assert all({"id", "users"} <= p.keys() for p in profiles)
        suggested = http.get("/main/suggested").json()
        assert len(suggested) == 5
        assert all(len(s["profiles"]) >= 2 for s in suggested)
        user, profile = suggested[0]["id"], suggested[0]["profiles"][0]
        with http.stream("GET", f"/stream/{user}/{profile}?session=session-up-1") as stream:
            assert stream.status_code == 200
            parser, kinds = SseParser(), []
            for chunk in stream.iter_raw():
                kinds += [m.event for m in parser.feed(chunk)]
                if "data" in kinds:
                    break
        assert kinds[0] == "hello"
        assert http.get(f"/main/login/{user}").json() == [profile]


def test_ctrl_c_stops_everything(up: Up) -> None:
    """SIGINT stops every process the runner started: no port stays open."""
    up.proc.send_signal(signal.SIGINT)
    rest, _ = up.proc.communicate(timeout=120)
    assert up.proc.returncode == 0, rest
    assert "kubescaler: stopped." in rest
    still_open = [p for p in up.ports if port_open(p)]
    assert still_open == []
