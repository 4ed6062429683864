"""Real backing services for the whole test session, started once and waited on readiness."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from kubescaler.settings_cassandra import CassandraSettings
from kubescaler_dev import logins
from kubescaler_dev.cassandra import CassandraNode, provision
from kubescaler_dev.nginx import Nginx
from kubescaler_dev.proc import free_port
from kubescaler_dev.redis import RedisServer
from kubescaler_dev.services import Service, start_service

ROOT = Path(__file__).resolve().parent.parent
TEST_STATE = ROOT / ".local" / "test"


@pytest.fixture(scope="session")
def test_state() -> Iterator[Path]:
    """This session's folder under .local/test/, so two test runs never share servers' data.

    Folders of sessions whose process is gone are removed first; this one keeps its logs.
    """
    for old in TEST_STATE.glob("run-*"):
        pid = old.name.removeprefix("run-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)
    state = TEST_STATE / f"run-{os.getpid()}"
    state.mkdir(parents=True, exist_ok=True)
    yield state
    for heavy in state.glob("cassandra*/data"):
        shutil.rmtree(heavy, ignore_errors=True)


#: This session's Redis passwords (kubescaler_dev.logins): every test server runs with the
#: ACL users of kubescaler.redis_acl and every kubescaler process logs in as its own user.
REDIS_PASSWORDS = logins.fresh()


@pytest.fixture(scope="session")
def redis_passwords() -> dict[str, str]:
    """Every Redis user's password in this session (the test servers' and services')."""
    return REDIS_PASSWORDS


def _redis(test_state: Path, label: str, master: bool = False) -> RedisServer:
    """A fresh redis-server with the ACL users; a Redlock ``master`` persists every write
    (appendfsync always), as in production: a restart is only a restart, never a wipe (a wipe
    is a test's FLUSHALL, as the local ``admin``)."""
    port = free_port()
    data = test_state / f"redis-{label}-{port}"
    shutil.rmtree(data, ignore_errors=True)
    kind = "master" if master else "state"
    server = RedisServer(
        port, data, REDIS_PASSWORDS, persist=master, fsync_always=master, kind=kind
    )
    server.start_ready()
    return server


def denied(server: RedisServer) -> list[str]:
    """What ``server``'s ACL refused kubescaler's own users (ACL LOG): a command or key missing
    from kubescaler.redis_acl shows here even where the refusal itself was retried or ignored.
    Tests that provoke refusals reset the log."""
    client = server.client(socket_timeout=2)
    try:
        entries = client.acl_log()
    finally:
        client.close()
    own = set(logins.ROLE.values())
    return [
        f"{e['username']}: {e['reason']} {e['object']} ({e['context']}) x{e['count']}"
        for e in entries
        if e["username"] in own
    ]


def _stop_checked(servers: list[RedisServer]) -> None:
    """Stop ``servers``; fail the session when their ACL refused a kubescaler process."""
    found = []
    for server in servers:
        if server.running:
            found += [f"{server.name}: {line}" for line in denied(server)]
        server.stop()
    assert not found, "the Redis ACL refused kubescaler's own users:\n" + "\n".join(found)


@pytest.fixture(scope="session")
def redis_server(test_state: Path) -> Iterator[RedisServer]:
    """One real redis-server for streams, the event log and launched state."""
    server = _redis(test_state, "main")
    yield server
    _stop_checked([server])


@pytest.fixture(scope="session")
def redis_masters(test_state: Path) -> Iterator[list[RedisServer]]:
    """Three independent real redis-servers, the Redlock masters. Tests that stop one restart it."""
    servers = [_redis(test_state, f"master{i}", master=True) for i in range(3)]
    yield servers
    _stop_checked(servers)


CASSANDRA_LIB = ROOT / ".local" / "cassandra" / "lib"


#: The keyspace of the test services; the test node's role ``base`` may read and write it only.
TEST_KEYSPACE = "kubescaler_test"
#: base's login on each test node, as :func:`provision` made it
BASE_LOGIN: dict[int, CassandraSettings] = {}


@pytest.fixture(scope="session")
def cassandra_node(test_state: Path) -> Iterator[CassandraNode]:
    """One real Cassandra 5.0 node (Maven Central jars, OpenJDK 17) with a fresh data folder,
    authenticated as production runs it: an admin superuser, base's role with SELECT and
    MODIFY on the test keyspace only, the default superuser disabled (``base_login``)."""
    home = test_state / "cassandra"
    shutil.rmtree(home / "data", ignore_errors=True)
    node = CassandraNode(
        home, native_port=free_port(), storage_port=free_port(), lib_dir=CASSANDRA_LIB
    )
    node.start_ready(timeout=240)
    try:
        BASE_LOGIN[node.native_port] = provision(node, TEST_KEYSPACE)
    except BaseException:
        node.stop()
        raise
    yield node
    node.stop()


@pytest.fixture(scope="session")
def base_login(cassandra_node: CassandraNode) -> CassandraSettings:
    """Settings that reach the test node as base's role, on the test keyspace."""
    return BASE_LOGIN[cassandra_node.native_port]


def service_env(redis: RedisServer, cassandra: CassandraNode, **extra: str) -> dict[str, str]:
    """Environment for kubescaler processes pointed at the test servers (base logs in as its
    role)."""
    login = BASE_LOGIN[cassandra.native_port]
    return {
        "KUBESCALER_REDIS_URL": redis.url,
        "KUBESCALER_CASSANDRA_PORT": str(cassandra.native_port),
        "KUBESCALER_CASSANDRA_KEYSPACE": TEST_KEYSPACE,
        "KUBESCALER_CASSANDRA_USERNAME": login.username,
        "KUBESCALER_CASSANDRA_PASSWORD": login.password,
        "KUBESCALER_LOG_LEVEL": "warning",
        **extra,
    }


def _shared_user_pairs(
    main: httpx.Client, users: int, profiles: int, shared_users: int
) -> list[tuple[str, str, str]]:
    """Fresh test data through ``main`` (its old data dropped): for each shared user, its two
    profiles as (user, profile, a profile the user is NOT bound to)."""
    main.delete("/testdata")
    r = main.post(
        "/testdata",
        params={
            "users": users,
            "profiles": profiles,
            "shared_users": shared_users,
            "users_per_profile": 1,
            "profiles_per_shared_user": 2,
        },
    )
    assert r.status_code == 201, r.text
    all_profiles = main.get("/profiles").json()
    out = []
    for s in main.get("/suggested").json():
        other = next(p["id"] for p in all_profiles if s["id"] not in p["users"])
        out += [(s["id"], s["profiles"][0], other), (s["id"], s["profiles"][1], other)]
    return out


@pytest.fixture(scope="session")
def shared_user_pairs() -> Callable[..., list[tuple[str, str, str]]]:
    """``(main client, users, profiles, shared users)`` -> pairs on fresh test data."""
    return _shared_user_pairs


@pytest.fixture(scope="session")
def base_service(
    redis_server: RedisServer, cassandra_node: CassandraNode, test_state: Path
) -> Iterator[Service]:
    """`kubescaler base` as a real process on the test Cassandra."""
    svc = start_service("base", service_env(redis_server, cassandra_node), test_state / "logs")
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def main_service(
    redis_server: RedisServer,
    cassandra_node: CassandraNode,
    base_service: Service,
    test_state: Path,
) -> Iterator[Service]:
    """`kubescaler main` as a real process, talking to base_service over HTTP."""
    env = service_env(redis_server, cassandra_node, KUBESCALER_BASE_URL=base_service.url)
    svc = start_service("main", env, test_state / "logs", passwords=REDIS_PASSWORDS)
    yield svc
    svc.stop()


#: Short lock times so expiry is observable in tests; a slow rate so many streams fit 2 cores.
STREAM_TEST_ENV = {
    "KUBESCALER_LOCK_TTL_MS": "3000",
    "KUBESCALER_LOCK_REFRESH_INTERVAL_MS": "1000",
    "KUBESCALER_LOCK_REQUEST_TIMEOUT_MS": "2000",
    "KUBESCALER_STREAM_EVENT_BYTES": "2048",
    "KUBESCALER_STREAM_EVENTS_PER_S": "20",
    "KUBESCALER_STREAM_GRACE_S": "5",
}


StreamEnv = Callable[[RedisServer, list[RedisServer]], dict[str, str]]


@pytest.fixture(scope="session")
def stream_env_for(cassandra_node: CassandraNode, base_service: Service) -> StreamEnv:
    """The environment of lock-keeper and stream processes on a given state Redis and masters."""

    def make(state: RedisServer, masters: list[RedisServer]) -> dict[str, str]:
        return service_env(
            state,
            cassandra_node,
            KUBESCALER_BASE_URL=base_service.url,
            KUBESCALER_REDIS_LOCK_URLS=",".join(m.url for m in masters),
            **STREAM_TEST_ENV,
        )

    return make


@pytest.fixture(scope="session")
def stream_env(
    redis_server: RedisServer, redis_masters: list[RedisServer], stream_env_for: StreamEnv
) -> dict[str, str]:
    """Environment of the lock-keeper and stream processes: three Redlock masters."""
    return stream_env_for(redis_server, redis_masters)


@pytest.fixture(scope="session")
def lock_keeper_service(stream_env: dict[str, str], test_state: Path) -> Iterator[Service]:
    svc = start_service("lock-keeper", stream_env, test_state / "logs", passwords=REDIS_PASSWORDS)
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def stream_services(
    stream_env: dict[str, str], lock_keeper_service: Service, test_state: Path
) -> Iterator[list[Service]]:
    """Two stream instances sharing the locks; tests that stop one start it again."""
    services = [
        start_service(
            "stream",
            {**stream_env, "KUBESCALER_INSTANCE": name},
            test_state / "logs",
            name=name,
            passwords=REDIS_PASSWORDS,
        )
        for name in ("stream-a", "stream-b")
    ]
    yield services
    for svc in services:
        svc.stop()


@pytest.fixture(scope="session")
def gateway(
    main_service: Service, stream_services: list[Service], test_state: Path
) -> Iterator[Nginx]:
    """The nginx entry point in front of main and both stream instances."""
    nginx = Nginx(
        test_state / "nginx",
        free_port(),
        f"127.0.0.1:{main_service.port}",
        [f"127.0.0.1:{s.port}" for s in stream_services],
    )
    nginx.start()
    nginx.wait_until(nginx.ready, 20)
    yield nginx
    nginx.stop()


# ------------------------------------------------------------------ the auth mode (issue 13)

#: The auth-on services' HMAC key and admin token (test values, nothing else knows them).
AUTH_SECRET = "test-auth-secret-of-at-least-32-bytes"
AUTH_ADMIN_TOKEN = "test-admin-token"


@pytest.fixture(scope="session")
def auth_env(stream_env: dict[str, str]) -> dict[str, str]:
    """Auth on, and stream-open limits small enough to reach in a test: 3 opens per session
    and 40 per address per 3 s; one trusted proxy (the nginx below). Logs at debug, so a test
    can look for tokens in them."""
    return {
        **stream_env,
        "KUBESCALER_AUTH_ENABLED": "true",
        "KUBESCALER_AUTH_SECRET": AUTH_SECRET,
        "KUBESCALER_ADMIN_TOKEN": AUTH_ADMIN_TOKEN,
        "KUBESCALER_LIMITS_OPENS_PER_SESSION": "3",
        "KUBESCALER_LIMITS_OPENS_PER_ADDRESS": "40",
        "KUBESCALER_LIMITS_WINDOW_S": "3",
        "KUBESCALER_LIMITS_PROXY_HOPS": "1",
        "KUBESCALER_LOG_LEVEL": "debug",
    }


@pytest.fixture(scope="session")
def auth_main(auth_env: dict[str, str], test_state: Path) -> Iterator[Service]:
    """`kubescaler main` with auth on, on the shared base."""
    svc = start_service(
        "main", auth_env, test_state / "logs", name="main-auth", passwords=REDIS_PASSWORDS
    )
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def auth_stream(
    auth_env: dict[str, str], lock_keeper_service: Service, test_state: Path
) -> Iterator[Service]:
    """One `kubescaler stream` with auth on, sharing the lock-keeper and the Redlock masters."""
    env = {**auth_env, "KUBESCALER_INSTANCE": "stream-auth"}
    svc = start_service(
        "stream", env, test_state / "logs", name="stream-auth", passwords=REDIS_PASSWORDS
    )
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def auth_gateway(auth_main: Service, auth_stream: Service, test_state: Path) -> Iterator[Nginx]:
    """An nginx entry point in front of the auth-on main and stream."""
    nginx = Nginx(
        test_state / "nginx-auth",
        free_port(),
        f"127.0.0.1:{auth_main.port}",
        [f"127.0.0.1:{auth_stream.port}"],
    )
    nginx.start()
    nginx.wait_until(nginx.ready, 20)
    yield nginx
    nginx.stop()


@pytest.fixture(scope="session")
def mint_token() -> Callable[..., str]:
    """Tokens the auth-on services accept: ``mint_token(user, admin=False, ttl_s=600)``."""
    from kubescaler.adapters.tokens import mint
    from kubescaler.settings import AuthSettings

    def make(user: str, *, admin: bool = False, ttl_s: float = 600) -> str:
        return mint(
            AuthSettings(enabled=True, secret=AUTH_SECRET),
            AUTH_SECRET,
            user,
            admin=admin,
            ttl_s=ttl_s,
        )

    return make
