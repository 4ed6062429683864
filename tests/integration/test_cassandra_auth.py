"""The real test node runs authenticated: who may log in, what base's role may do, and how base
says a refused login (issue 24)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from cassandra import AuthenticationFailed, Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable, Session

from kubescaler.adapters import cassandra_roles
from kubescaler.adapters.cassandra import CassandraRepository
from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.domain.models import User
from kubescaler.settings_cassandra import CassandraSettings
from kubescaler_dev.cassandra import ADMIN_ROLE, CassandraNode, provision
from kubescaler_dev.proc import free_port
from kubescaler_dev.redis import RedisServer

pytestmark = pytest.mark.integration


def _cluster(node: CassandraNode, user: str | None, password: str | None) -> Cluster:
    auth = PlainTextAuthProvider(user, password) if user is not None else None
    return Cluster(
        [node.host],
        port=node.native_port,
        auth_provider=auth,
        protocol_version=5,
        connect_timeout=5,
        control_connection_timeout=5,
    )


def _refusal(node: CassandraNode, user: str | None, password: str | None) -> str:
    """The driver's refusal of a login as ``user``; fails the test if it logs in."""
    cluster = _cluster(node, user, password)
    try:
        with pytest.raises(NoHostAvailable) as caught:
            cluster.connect()
    finally:
        cluster.shutdown()
    errors = list(caught.value.errors.values())
    assert errors, caught.value
    assert all(isinstance(e, AuthenticationFailed) for e in errors), errors
    return str(errors[0])


def _logs_in(node: CassandraNode, user: str, password: str) -> bool:
    cluster = _cluster(node, user, password)
    try:
        cluster.connect()
    except NoHostAvailable:
        return False
    finally:
        cluster.shutdown()
    return True


def _refused_within(node: CassandraNode, user: str, password: str, seconds: float) -> str:
    """The refusal of a login that stops working: a node caches a role's credentials for
    credentials_validity (2 s by default) after its last use."""
    deadline = time.monotonic() + seconds
    while _logs_in(node, user, password):
        assert time.monotonic() < deadline, f"{user} still logs in after {seconds} s"
        time.sleep(0.5)
    return _refusal(node, user, password)


@pytest.fixture
def as_base(cassandra_node: CassandraNode, base_login: CassandraSettings) -> Iterator[Session]:
    cluster = _cluster(cassandra_node, base_login.username, base_login.password)
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()


def test_no_credentials_no_session(cassandra_node: CassandraNode) -> None:
    """Reaching 9042 is not enough: without a login there is no session, so no DROP."""
    assert "requires authentication" in _refusal(cassandra_node, None, None)


def test_the_default_superuser_is_disabled(cassandra_node: CassandraNode) -> None:
    """cassandra/cassandra no longer logs in (LOGIN false, and a random password), at the
    latest once the node's credentials cache (2 s) forgot the login that made the roles."""
    _refused_within(cassandra_node, "cassandra", "cassandra", 10)
    assert cassandra_node.login is not None
    admin = _cluster(cassandra_node, *cassandra_node.login)
    try:
        row = (
            admin.connect()
            .execute(
                "SELECT can_login, is_superuser FROM system_auth.roles WHERE role = 'cassandra'"
            )
            .one()
        )
    finally:
        admin.shutdown()
    assert row is not None
    assert not row.can_login


def test_a_wrong_password_is_refused(
    cassandra_node: CassandraNode, base_login: CassandraSettings
) -> None:
    assert "incorrect" in _refusal(cassandra_node, base_login.username, base_login.password + "x")


def test_base_reads_and_writes_its_tables(as_base: Session, base_login: CassandraSettings) -> None:
    ks, key = base_login.keyspace, uuid.uuid4()
    as_base.execute(f"INSERT INTO {ks}.user (id, name) VALUES (%s, %s)", (key, "auth"))
    as_base.execute(f"UPDATE {ks}.profile SET users = users + %s WHERE id = %s", ({key}, key))
    row = as_base.execute(f"SELECT name FROM {ks}.user WHERE id = %s", (key,)).one()
    assert row is not None
    assert row.name == "auth"
    as_base.execute(f"DELETE FROM {ks}.user WHERE id = %s", (key,))
    as_base.execute(f"DELETE FROM {ks}.profile WHERE id = %s", (key,))
    assert as_base.execute(f"SELECT name FROM {ks}.user WHERE id = %s", (key,)).one() is None


@pytest.mark.parametrize(
    "cql",
    [
        "DROP KEYSPACE {ks}",
        "DROP TABLE {ks}.user",
        "ALTER TABLE {ks}.user ADD extra text",
        "CREATE TABLE {ks}.mine (id int PRIMARY KEY)",
        "CREATE KEYSPACE stolen WITH replication = "
        "{{'class': 'SimpleStrategy', 'replication_factor': 1}}",
        "GRANT ALL ON KEYSPACE {ks} TO base",
        "CREATE ROLE intruder WITH LOGIN = true AND PASSWORD = 'x'",
        "ALTER ROLE base WITH SUPERUSER = true",
        "SELECT salted_hash FROM system_auth.roles",
    ],
)
def test_base_may_not_change_the_schema_or_the_roles(
    as_base: Session, base_login: CassandraSettings, cql: str
) -> None:
    """base's role holds SELECT and MODIFY on its keyspace and nothing else."""
    with pytest.raises(Unauthorized):
        as_base.execute(cql.format(ks=base_login.keyspace))
    # the keyspace is still there for the next test
    assert as_base.execute(f"SELECT id FROM {base_login.keyspace}.user LIMIT 1") is not None


def test_roles_are_made_again_idempotently_and_a_rotated_password_wins(
    cassandra_node: CassandraNode, base_login: CassandraSettings
) -> None:
    """A second run changes nothing that is right; a new password in the settings becomes the
    role's password, and the old one stops working."""
    assert cassandra_node.login is not None
    own = msgspec.structs.replace(
        base_login,
        username="rotated",
        password="first-password",
        admin_username=ADMIN_ROLE,
        admin_password=cassandra_node.login[1],
    )
    cassandra_roles.ensure(own)
    cassandra_roles.ensure(own)
    time.sleep(5.1)  # Cassandra 5 refuses a second password change of one role within 5 s
    cassandra_roles.ensure(msgspec.structs.replace(own, password="second-password"))
    _refused_within(cassandra_node, "rotated", "first-password", 10)
    cluster = _cluster(cassandra_node, "rotated", "second-password")
    try:
        cluster.connect().execute(f"SELECT id FROM {base_login.keyspace}.user LIMIT 1")
    finally:
        cluster.shutdown()


def test_roles_refuse_to_run_without_their_settings(base_login: CassandraSettings) -> None:
    with pytest.raises(cassandra_roles.RolesError, match="KUBESCALER_CASSANDRA_ADMIN_PASSWORD"):
        cassandra_roles.ensure(
            msgspec.structs.replace(base_login, admin_username="root", admin_password="")
        )


def _env(redis: RedisServer, node: CassandraNode, **extra: str) -> dict[str, str]:
    return {
        "KUBESCALER_REDIS_URL": redis.url,
        "KUBESCALER_CASSANDRA_PORT": str(node.native_port),
        "KUBESCALER_CASSANDRA_KEYSPACE": "kubescaler_test",
        "KUBESCALER_CASSANDRA_USERNAME": "base",
        "KUBESCALER_LOG_LEVEL": "warning",
        **extra,
    }


def _base_exits(env: dict[str, str]) -> tuple[int, str, float]:
    """`kubescaler base` with ``env``: its exit status, its output and how long it ran."""
    argv = [sys.executable, "-m", "kubescaler.cli", "base", "--port", str(free_port())]
    start = time.monotonic()
    done = subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - start


@pytest.mark.parametrize(
    ("username", "password", "line"),
    [
        (
            "base",
            "not-the-password",
            "Cassandra at 127.0.0.1:{port} refused role 'base': bad credentials; "
            "check KUBESCALER_CASSANDRA_PASSWORD",
        ),
        (
            "",
            "",
            "Cassandra at 127.0.0.1:{port} requires a login and none is set; "
            "set KUBESCALER_CASSANDRA_USERNAME and KUBESCALER_CASSANDRA_PASSWORD",
        ),
    ],
)
def test_base_with_a_refused_login_exits_with_one_line_naming_the_setting(
    redis_server: RedisServer,
    cassandra_node: CassandraNode,
    username: str,
    password: str,
    line: str,
) -> None:
    env = _env(
        redis_server,
        cassandra_node,
        KUBESCALER_CASSANDRA_USERNAME=username,
        KUBESCALER_CASSANDRA_PASSWORD=password,
        KUBESCALER_CASSANDRA_LOGIN_GRACE_S="0",
    )
    status, output, took = _base_exits(env)
    assert status == 78, output
    assert line.format(port=cassandra_node.native_port) in output
    assert sum(line.format(port=cassandra_node.native_port) in x for x in output.splitlines()) == 1
    assert took < 30
    if password:
        assert password not in output


def test_base_waits_out_its_login_grace_before_it_exits(
    redis_server: RedisServer, cassandra_node: CassandraNode
) -> None:
    """At the first start the roles may still be in the making: a refusal is retried (one
    warning line each) for the grace, then base exits."""
    env = _env(
        redis_server,
        cassandra_node,
        KUBESCALER_CASSANDRA_PASSWORD="not-the-password",
        KUBESCALER_CASSANDRA_LOGIN_GRACE_S="3",
        KUBESCALER_LOG_LEVEL="warning",
    )
    status, output, took = _base_exits(env)
    assert status == 78, output
    assert took >= 3
    assert "bad credentials; check KUBESCALER_CASSANDRA_PASSWORD (retried for up to 3 s" in output
    assert "not-the-password" not in output


@pytest.mark.slow
async def test_a_node_that_comes_back_empty_gets_its_roles_again_and_base_follows(
    test_state: Path,
) -> None:
    """One replica: a node replaced by an empty one lost the roles with the data. Until the
    roles are made again base's login is refused (and base keeps trying, it does not exit);
    the same idempotent step as on a first start (the cluster's sidecar runs it every 30 s)
    makes them, and base's session answers again without a restart."""
    home = test_state / "cassandra-empty"
    shutil.rmtree(home, ignore_errors=True)
    node = CassandraNode(
        home,
        native_port=free_port(),
        storage_port=free_port(),
        heap="512m",
        lib_dir=test_state.parent / "cassandra" / "lib",
    )
    node.start_ready(timeout=240)
    try:
        login = provision(node, "kubescaler_empty")
        settings = msgspec.structs.replace(login, request_timeout_s=2.0, reresolve_interval_s=0.5)
        repo = CassandraRepository(settings)
        runner = asyncio.create_task(repo.run())  # connects, then follows, as in base
        for _ in range(300):
            if repo.connected:
                break
            await asyncio.sleep(0.1)
        assert await repo.create_user(User(id=uuid.uuid4(), name="before"))

        node.stop()
        shutil.rmtree(node.data_dir)  # the replacement's volume is empty
        node.login = None
        node.start_ready(timeout=240)
        await asyncio.sleep(3)  # the driver reconnects: refused, no roles yet
        with pytest.raises(DependencyUnavailable):
            await repo.create_user(User(id=uuid.uuid4(), name="refused"))

        again = provision(node, "kubescaler_empty")  # same passwords, kept in the node's folder
        assert again.password == login.password
        deadline = time.monotonic() + 30
        while True:
            try:
                assert await repo.create_user(User(id=uuid.uuid4(), name="after"))
                break
            except DependencyUnavailable:
                assert time.monotonic() < deadline, "base's session did not come back"
                await asyncio.sleep(0.5)
        page, _ = await repo.users_page(10, None)
        assert [u.name for u in page] == ["after"]  # empty indeed: "before" went with the data
        assert repo.sessions.replacements == 1  # a new session: the driver alone gave up
        runner.cancel()
        await repo.close()
    finally:
        node.stop()
