"""The Redis ACL on real redis-servers (issue 24): started with the users of
kubescaler.redis_acl, as every test server is, a client without credentials gets NOAUTH,
another role's credentials NOPERM for what the role does not do, the lock-keeper's own
credentials work; a process started with a wrong password says so in one line and exits."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kubescaler_dev import logins
from kubescaler_dev.proc import free_port
from kubescaler_dev.redis import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def servers(test_state: Path, redis_passwords: dict[str, str]) -> Iterator[list[RedisServer]]:
    """A state Redis and a Redlock master of this module's own, with the same users as every
    test server: the refusals provoked here stay out of the shared servers' ACL LOG (which the
    session checks for refusals of kubescaler's own processes)."""
    found = [
        RedisServer(free_port(), test_state / f"acl-{kind}", redis_passwords, kind=kind)
        for kind in ("state", "master")
    ]
    for server in found:
        server.start_ready()
    yield found
    for server in found:
        server.stop()


@pytest.fixture(scope="module")
def redis_server(servers: list[RedisServer]) -> RedisServer:
    return servers[0]


@pytest.fixture(scope="module")
def redis_masters(servers: list[RedisServer]) -> list[RedisServer]:
    return [servers[1]]


def _client(server: RedisServer, user: str) -> redis.Redis:
    return redis.Redis(port=server.port, socket_timeout=2, **server.login(user))  # type: ignore[arg-type]


def _lock_write(server: RedisServer, user: str | None, key: str) -> bytes:
    """What Redis answers, on the wire, to a lock write on ``server`` as ``user`` (None: no
    AUTH at all, as any pod that reaches the port): the reply's first line."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        reader = sock.makefile("rb")
        if user is not None:
            sock.sendall(_resp("AUTH", user, server.passwords[user]))
            assert reader.readline() == b"+OK\r\n"
        sock.sendall(_resp("SET", key, "intruder", "PX", "5000"))
        return reader.readline().rstrip()


def _resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def test_lock_writes_need_the_keepers_login(
    redis_server: RedisServer, redis_masters: list[RedisServer]
) -> None:
    pair = f"{uuid.uuid4()}:{uuid.uuid4()}"
    for server, key in (
        (redis_server, f"kubescaler:lock:fence:{pair}"),
        (redis_masters[0], f"kubescaler:lock:pair:{pair}"),
    ):
        assert _lock_write(server, None, key).startswith(b"-NOAUTH ")
        if server is redis_server:
            for user in ("main", "replay", "stream", "keda"):
                assert _lock_write(server, user, key).startswith(b"-NOPERM "), user
        assert _lock_write(server, "lock-keeper", key) == b"+OK"
        admin = server.client()
        try:
            assert admin.get(key) == b"intruder"
            admin.delete(key)
        finally:
            admin.close()


def test_read_only_users_cannot_write_what_they_read(redis_server: RedisServer) -> None:
    """replay reads the event log, main the launched profiles; neither may change them."""
    replay, main = _client(redis_server, "replay"), _client(redis_server, "main")
    try:
        replay.xrange("kubescaler:lock:log", count=1)
        with pytest.raises(redis.exceptions.NoPermissionError):
            replay.xadd("kubescaler:lock:log", {"forged": "1"})
        with pytest.raises(redis.exceptions.NoPermissionError):
            replay.delete("kubescaler:lock:log")
        main.zrangebyscore(f"kubescaler:launched-profiles:{uuid.uuid4()}", 0, "+inf")
        with pytest.raises(redis.exceptions.NoPermissionError):
            main.zadd(f"kubescaler:launched-profiles:{uuid.uuid4()}", {"p": 1})
        with pytest.raises(redis.exceptions.NoPermissionError):
            main.flushall()
    finally:
        replay.close()
        main.close()


def _start(command: str, env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubescaler.cli", command, "--port", "1"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("login", "said"),
    [
        (
            {"KUBESCALER_REDIS_USERNAME": "stream", "KUBESCALER_REDIS_PASSWORD": "wrong"},
            "refused user 'stream' (WRONGPASS): check KUBESCALER_REDIS_USERNAME and "
            "KUBESCALER_REDIS_PASSWORD",
        ),
        (
            {},
            "refused no login (NOAUTH): check KUBESCALER_REDIS_USERNAME and "
            "KUBESCALER_REDIS_PASSWORD",
        ),
    ],
)
def test_a_refused_login_is_one_line_and_a_failed_start(
    redis_server: RedisServer, tmp_path: Path, login: dict[str, str], said: str
) -> None:
    env = {"KUBESCALER_REDIS_URL": redis_server.url, **login}
    done = _start("stream", env, tmp_path)
    assert done.returncode == 2, done
    port = redis_server.port
    assert done.stderr.strip().splitlines() == [
        f"kubescaler stream: Redis at 127.0.0.1:{port} {said}"
    ]
    assert "wrong" not in done.stderr.replace("WRONGPASS", "")  # the password is not echoed


def test_a_refused_master_login_names_the_lock_settings(
    redis_server: RedisServer, redis_masters: list[RedisServer], tmp_path: Path
) -> None:
    env = {
        "KUBESCALER_REDIS_URL": redis_server.url,
        "KUBESCALER_REDIS_LOCK_URLS": ",".join(m.url for m in redis_masters),
        **logins.service_env("lock-keeper", redis_server.passwords),
        "KUBESCALER_REDIS_LOCK_PASSWORD": "not-the-password",
    }
    done = _start("lock-keeper", env, tmp_path)
    assert done.returncode == 2, done
    port = redis_masters[0].port
    assert done.stderr.strip() == (
        f"kubescaler lock-keeper: Redlock master at 127.0.0.1:{port} refused user "
        "'lock-keeper' (WRONGPASS): check KUBESCALER_REDIS_LOCK_USERNAME and "
        "KUBESCALER_REDIS_LOCK_PASSWORD"
    )


def test_replay_with_a_wrong_password_says_which_settings(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubescaler.entrypoints import replay

    monkeypatch.setenv("KUBESCALER_REDIS_USERNAME", "replay")
    monkeypatch.setenv("KUBESCALER_REDIS_PASSWORD", "not-the-password")
    assert replay.run(["--redis-url", redis_server.url, "--verify"]) == 2
    said = capsys.readouterr().err
    assert said.startswith("replay: Redis refused the login of user 'replay' (")
    assert "check KUBESCALER_REDIS_USERNAME and KUBESCALER_REDIS_PASSWORD" in said
    assert "not-the-password" not in said
    monkeypatch.setenv("KUBESCALER_REDIS_PASSWORD", redis_server.passwords["replay"])
    assert replay.run(["--redis-url", redis_server.url, "--verify"]) == 0


@pytest.mark.parametrize("kind", ["state", "master"])
def test_a_restarted_server_keeps_what_its_scripts_wrote(
    test_state: Path, redis_passwords: dict[str, str], kind: str
) -> None:
    """A script's writes reach the AOF as one MULTI/EXEC, which Redis replays at start as the
    ``default`` user, re-checking its ACL: with ``default`` stripped of its permissions every
    such write vanished on a restart while plain SETs stayed (a Redlock master came back with
    its ready marker and none of its locks or counters). Killed as a crash kills it, the server
    comes back with both."""
    server = RedisServer(
        free_port(), test_state / f"acl-restart-{kind}", redis_passwords, kind=kind,
        fsync_always=True,
    )  # fmt: skip
    server.start_ready()
    try:
        keeper = server.client("lock-keeper")
        lock, fence = f"kubescaler:lock:{uuid.uuid4()}", f"kubescaler:lock:fence:{uuid.uuid4()}"
        # a vote's two writes (the masters' user may SET, not INCR)
        script = "redis.call('SET', KEYS[1], 'owner', 'PX', 600000); redis.call('SET', KEYS[2], 7)"
        keeper.eval(script, 2, lock, fence)
        keeper.set("kubescaler:lock:ready", "1")  # a plain write, kept either way
        keeper.close()
        server.kill()
        server.start_ready()
        keeper = server.client("lock-keeper")
        assert keeper.get("kubescaler:lock:ready") == b"1"
        assert (keeper.get(lock), keeper.get(fence)) == (b"owner", b"7"), (
            "the AOF's transactions were not replayed: " + server.tail()
        )
        keeper.close()
        assert "AOF-loading-client" not in (server.data_dir / "redis.log").read_text()
    finally:
        server.stop()
