"""The README's first command: `./dev up` brings the whole system up behind one entry point,
and keeps it up as Kubernetes would when one of its processes dies.

It runs as a real process on free ports with its own state folder, exactly as `./dev up` runs
it, and is stopped with Ctrl-C (SIGINT) at the end.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
import redis
from localsystem import Up, Watcher, command_ids, free_pairs

from kubescaler.domain.locks import record_from_fields
from kubescaler.domain.sse import SseParser
from kubescaler_dev import logins
from kubescaler_dev.proc import free_port, port_open

# the module fixture starts the whole stack (Cassandra and its roles included) inside the first
# test's timeout, while `./dev test` builds the cluster beside it: its own 300 s wait for
# the ready line must fire first, with what `up` printed, not pytest-timeout's bare 300 s
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

#: Every process `up` starts inherits these: light streams, a short drain, quick reclaims.
UP_ENV = {
    "KUBESCALER_LOG_LEVEL": "warning",
    "KUBESCALER_STREAM_EVENT_BYTES": "2048",
    "KUBESCALER_STREAM_EVENTS_PER_S": "20",
    "KUBESCALER_STREAM_GRACE_S": "5",
    "KUBESCALER_LOCK_REQUEST_TIMEOUT_MS": "2000",
    "KUBESCALER_LOCK_CLAIM_IDLE_MS": "2000",
}


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
    ports |= {f"sentinel{i}": free_port() for i in range(3)}
    ports |= {f"redlock{i}": free_port() for i in range(3)}
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
        # up's state Redis (a primary, replicas, Sentinels) and three Redlock masters of its own
        "KUBESCALER_REDIS_SENTINELS": ",".join(
            f"127.0.0.1:{ports[f'sentinel{i}']}" for i in range(3)
        ),
        "KUBESCALER_REDIS_LOCK_URLS": ",".join(
            f"redis://127.0.0.1:{ports[f'redlock{i}']}/0" for i in range(3)
        ),
        "KUBESCALER_LOCAL_STATE_DIR": str(test_state / "up"),
        **UP_ENV,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubescaler_dev.cli", "up", "--streams", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    running = Up(proc, ports, test_state / "up")
    if proc.poll() is None:
        running.wait_for(r"Ctrl-C stops it\.", timeout=300)
    yield running
    if proc.poll() is None:  # a test failed before Ctrl-C: stop its children too, then it
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(180)
        except subprocess.TimeoutExpired:
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


# -- supervision: processes that die come back --------------------------------------------------


async def test_sigterm_drains_an_instance_clients_resume_elsewhere_and_it_comes_back(
    up: Up,
) -> None:
    """SIGTERM a stream instance under live clients: they get `reconnect`, resume on the other
    instance with the same session and a token not lower, and `up` starts the drained one
    again on its port; the lock history verifies."""
    pairs = free_pairs(up, 6)
    mark = len(up.output)
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as http:
        watchers = [Watcher(up, p, f"session-drain-{i}") for i, p in enumerate(pairs)]
        hellos = [await w.open(http) for w in watchers]
        victim = str(hellos[0]["instance"])
        on_victim = [
            (w, h) for w, h in zip(watchers, hellos, strict=True) if h["instance"] == victim
        ]
        old_pid = up.pid(victim)
        os.kill(old_pid, signal.SIGTERM)
        for w, before in on_victim:
            await w.next("reconnect", timeout=5)
            await w.close()
            after = await w.open(http)
            assert after["instance"] != victim
            assert after["session"] == before["session"]
            assert after["token"] >= before["token"]  # type: ignore[operator]
            await w.next("data")
        exited = await asyncio.to_thread(up.wait_for, rf"{victim} exited \((.*?)\)", 30, mark)
        assert exited.group(1) == "signal SIGTERM"  # a finished drain re-raises its signal
        back = await asyncio.to_thread(up.wait_for, rf"{victim} is back \(pid (\d+)\)", 60, mark)
        assert int(back.group(1)) != old_pid
        port = up.ports["STREAM_PORT"] + (0 if victim == "stream-0" else 1)
        ready = await http.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 200, ready.text
        for w in watchers:
            await w.close()
    assert up.replay("--verify") == 0


async def test_sigkill_of_the_lock_keeper_is_503_then_every_command_is_answered(
    up: Up,
) -> None:
    """SIGKILL the lock-keeper while clients race for pairs: they get 503 naming it (never a
    hang or a dropped connection); `up` restarts it; every command published is answered
    (expired or applied, none left pending) and the lock history verifies."""
    pairs = free_pairs(up, 4)
    mark = len(up.output)
    seen: list[tuple[float, int, str]] = []
    racing = True

    async def racer(http: httpx.AsyncClient, i: int) -> None:
        user, profile = pairs[i % len(pairs)]
        attempt = 0
        while racing:
            # a new session per attempt: one session's 30 opens a minute (the stream-open rate
            # limit, a 429) would otherwise end the race before the keeper is back
            attempt += 1
            url = f"{up.gateway}/stream/{user}/{profile}?session=session-race-{i}-{attempt}"
            started = time.monotonic()
            try:
                async with http.stream("GET", url) as response:
                    body = b""
                    async for chunk in response.aiter_raw():  # the hello, or a refusal's body
                        body += chunk
                        if response.status_code != 200 or b"event: hello" in body:
                            break
            except httpx.HTTPError as exc:  # a dropped connection, or a hang past 10 s
                seen.append((time.monotonic() - started, 0, repr(exc)))
                continue
            dependency = ""
            if response.status_code == 503:
                dependency = msgspec.json.decode(body).get("dependency", "")
            seen.append((time.monotonic() - started, response.status_code, dependency))
            await asyncio.sleep(0.1)

    async with httpx.AsyncClient(timeout=httpx.Timeout(10)) as http:
        racers = [asyncio.create_task(racer(http, i)) for i in range(12)]
        await asyncio.sleep(2)
        os.kill(up.pid("lock-keeper-0"), signal.SIGKILL)
        try:  # waited for in a thread: the racers go on meanwhile
            exited = r"lock-keeper-0 exited \(signal SIGKILL\)"
            await asyncio.to_thread(up.wait_for, exited, 10, mark)
            await asyncio.to_thread(up.wait_for, r"lock-keeper-0 is back \(pid \d+\)", 60, mark)
            await asyncio.sleep(3)
        finally:
            racing = False
            await asyncio.gather(*racers)
    statuses = {status for _, status, _ in seen}
    assert statuses <= {200, 409, 503}, seen
    assert 200 in statuses
    assert {dep for _, status, dep in seen if status == 503} == {"lock-keeper"}
    assert max(took for took, _, _ in seen) < 5  # the 2 s request timeout, and some slack
    client = up.redis()
    try:
        deadline = time.monotonic() + 30
        while True:  # answered = logged (applied or expired) and acked
            pending = client.xpending("kubescaler:lock:commands", "lock-keeper")["pending"]
            published = command_ids(client)
            logged = {
                record_from_fields(fields).request_id
                for _, fields in client.xrange("kubescaler:lock:log")
            }
            if not pending and published <= logged:
                break
            assert time.monotonic() < deadline, (pending, published - logged)
            await asyncio.sleep(0.5)
    finally:
        client.close()
    assert len(published) > len(seen) // 2  # the racers' acquires went through the event path
    assert up.replay("--verify") == 0


def test_a_process_that_keeps_failing_at_start_up_is_reported_and_the_rest_runs(
    up: Up,
) -> None:
    """stream-1's port taken while it is down: `up` reports it failing at start-up with its
    log, streams go on through stream-0, and stream-1 comes back once the port is free."""
    mark = len(up.output)
    port = up.ports["STREAM_PORT"] + 1
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # The squatter hangs up on whoever connects, so the gateway (least connections first, and
    # the squatter has none) fails over to stream-0 instead of waiting on it forever.
    squatting = threading.Event()
    squatter = threading.Thread(target=_hang_up_on_everyone, args=(blocker, squatting))
    try:
        os.kill(up.pid("stream-1"), signal.SIGKILL)
        deadline = time.monotonic() + 5
        while True:  # take the port the moment the killed process lets it go
            try:
                blocker.bind(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        blocker.listen()
        squatting.set()
        squatter.start()
        report = up.wait_for(r"stream-1 keeps failing at start-up.*", timeout=90, after=mark)
        assert "the rest keeps running" in report.group(0)
        assert "exit status" in report.group(0)
        assert re.search(
            r"address already in use|Errno 98", up.text[up.text.index(report.group(0)) :]
        )
        user, profile = free_pairs(up, 1)[0]
        path = f"{up.gateway}/stream/{user}/{profile}?session=session-rest-1"
        with httpx.stream("GET", path, timeout=30) as r:
            assert r.status_code == 200
            assert b"stream-0" in next(r.iter_raw())
    finally:
        squatting.clear()
        if squatter.ident is not None:
            squatter.join(5)
        blocker.close()
    up.wait_for(r"stream-1 is back \(pid \d+\)", timeout=90, after=mark)


def _hang_up_on_everyone(listener: socket.socket, squatting: threading.Event) -> None:
    listener.settimeout(0.1)
    while squatting.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        # linger 0: close with a reset, which the gateway reads as an upstream error
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()


def test_the_state_redis_fails_over_and_its_old_primary_comes_back_as_a_replica(up: Up) -> None:
    """SIGKILL of the state Redis's primary: the Sentinels promote a replica and a stream is
    granted again within seconds with no kubescaler process restarted; up starts the old
    primary again and the Sentinels make it a replica of the new one."""
    user, profile = free_pairs(up, 1)[0]
    port = up.ports["redis"]
    mark = len(up.output)
    os.kill(up.pid(f"redis:{port}"), signal.SIGKILL)
    killed = time.monotonic()
    path = f"{up.gateway}/stream/{user}/{profile}?session=session-failover-1"
    while True:
        with httpx.stream("GET", path, timeout=30) as r:
            if r.status_code == 200:
                break
            assert r.status_code == 503, r.read()
        assert time.monotonic() - killed < 30, "no stream granted 30 s after the kill"
        time.sleep(0.25)
    granted = time.monotonic() - killed
    up.wait_for(rf"redis:{port} is back \(pid \d+\)", timeout=60, after=mark)
    old = redis.Redis(port=port, socket_timeout=2, **logins.login(up.passwords))
    try:
        deadline = time.monotonic() + 60
        while old.info("replication")["role"] != "slave":
            assert time.monotonic() < deadline, "the old primary did not become a replica"
            time.sleep(0.5)
    finally:
        old.close()
    exited = re.findall(r"kubescaler: (\S+) exited", "".join(up.output[mark:]))
    assert exited == [f"redis:{port}"]
    print(f"\n./dev up: a stream granted {granted:.1f} s after the state Redis primary's SIGKILL")


def test_ctrl_c_stops_everything(up: Up) -> None:
    """SIGINT stops every process the runner started (restarted ones too): no port stays open."""
    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(timeout=180) == 0, up.text
    up.reader.join(10)
    assert "kubescaler: stopped." in up.text
    still_open = [p for p in up.ports.values() if port_open(p)]
    assert still_open == []
