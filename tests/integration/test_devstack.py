"""The local backing-service runners: a real Cassandra node and nginx as the entry point."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cassandra.cluster import Session

from kubescaler_dev.cassandra import CassandraNode, provision
from kubescaler_dev.nginx import Nginx
from kubescaler_dev.proc import free_port

pytestmark = pytest.mark.integration


# --- Cassandra -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(test_state: Path) -> Iterator[CassandraNode]:
    """A node of this module's own (the persistence test restarts it), on free ports."""
    native, storage = free_port(), free_port()
    home = test_state / "cassandra-devstack"  # kept after the run for its logs
    shutil.rmtree(home, ignore_errors=True)
    node = CassandraNode(
        home,
        native_port=native,
        storage_port=storage,
        heap="512m",
        lib_dir=test_state.parent / "cassandra" / "lib",
    )
    node.start_ready()
    provision(node, "devstack")  # authenticated, as every test node: cluster() is the admin
    yield node
    node.stop()


@pytest.fixture
def session(node: CassandraNode) -> Iterator[Session]:
    cluster = node.cluster()
    session = cluster.connect()
    session.execute(
        "CREATE KEYSPACE IF NOT EXISTS devstack WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    session.set_keyspace("devstack")
    yield session
    cluster.shutdown()


def _listening_ports(pid: int) -> set[int]:
    """TCP ports that process ``pid`` listens on, read from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed since the listing: the JVM opens and closes files
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def test_node_listens_only_on_its_cql_and_storage_ports(node: CassandraNode) -> None:
    """No JMX or other fixed port, so a dev node and a test node can run side by side."""
    assert node.popen is not None
    assert _listening_ports(node.popen.pid) == {node.native_port, node.storage_port}


def test_sai_index_on_set_values_answers_contains(session: Session) -> None:
    """`values(users)` indexed with SAI makes "all profiles of a user" one indexed query."""
    session.execute("CREATE TABLE IF NOT EXISTS profile (id uuid PRIMARY KEY, users set<uuid>)")
    session.execute(
        "CREATE INDEX IF NOT EXISTS profile_users ON profile (values(users)) USING 'sai'"
    )
    shared, other = uuid.uuid4(), uuid.uuid4()
    with_shared = {uuid.uuid4() for _ in range(3)}
    insert = session.prepare("INSERT INTO profile (id, users) VALUES (?, ?)")
    for profile in with_shared:
        session.execute(insert, (profile, {shared, uuid.uuid4()}))
    session.execute(insert, (uuid.uuid4(), {other}))

    rows = session.execute(
        session.prepare("SELECT id FROM profile WHERE users CONTAINS ?"), (shared,)
    )

    assert {row.id for row in rows} == with_shared


@pytest.mark.slow
def test_rows_survive_a_stop_and_start(node: CassandraNode, session: Session) -> None:
    """Data written before stop() (SIGTERM) is read back after the next start."""
    session.execute("CREATE TABLE IF NOT EXISTS kept (id uuid PRIMARY KEY, name text)")
    key = uuid.uuid4()
    session.execute("INSERT INTO kept (id, name) VALUES (%s, %s)", (key, "before restart"))
    session.cluster.shutdown()

    node.stop()
    assert not node.running
    node.start_ready()

    cluster = node.cluster()
    try:
        row = (
            cluster.connect("devstack").execute("SELECT name FROM kept WHERE id = %s", (key,)).one()
        )
    finally:
        cluster.shutdown()
    assert row is not None
    assert row.name == "before restart"


# --- nginx -----------------------------------------------------------------------------------


@dataclass
class Upstream:
    """A tiny HTTP server that answers with its name and records the requests it saw."""

    name: str
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                upstream.seen.append((self.path, dict(self.headers.items())))
                if self.path.endswith("/events"):
                    self._stream()
                    return
                body = f"{upstream.name} {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                """One event now, the last only once the test has seen the first."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b"data: first\n\n")
                self.wfile.flush()
                released = upstream.release.wait(10)
                self.wfile.write(b"data: last\n\n" if released else b"data: timed-out\n\n")
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Upstream]]:
    servers = {name: Upstream(name) for name in ("main", "stream-a", "stream-b")}
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def nginx(test_state: Path, upstreams: dict[str, Upstream]) -> Iterator[Nginx]:
    port = free_port()
    home = test_state / "nginx-devstack"  # kept after the run for its logs
    shutil.rmtree(home, ignore_errors=True)
    proxy = Nginx(
        home,
        port,
        upstreams["main"].address,
        [upstreams["stream-a"].address, upstreams["stream-b"].address],
    )
    proxy.start_ready()
    yield proxy
    proxy.stop()


def test_healthz_is_answered_by_nginx_itself(nginx: Nginx, upstreams: dict[str, Upstream]) -> None:
    """/healthz never reaches a service."""
    before = sum(len(up.seen) for up in upstreams.values())
    response = httpx.get(f"{nginx.url}/healthz")
    assert (response.status_code, response.text) == (200, "ok")
    assert sum(len(up.seen) for up in upstreams.values()) == before


def test_main_prefix_is_stripped_on_the_way_to_main(
    nginx: Nginx, upstreams: dict[str, Upstream]
) -> None:
    """/main/users?limit=3 reaches main as /users?limit=3, with the forwarding headers."""
    response = httpx.get(f"{nginx.url}/main/users?limit=3")
    assert response.text == "main /users?limit=3"
    path, headers = upstreams["main"].seen[-1]
    assert path == "/users?limit=3"
    assert headers["X-Forwarded-Prefix"] == "/main"
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert headers["Host"] == f"127.0.0.1:{nginx.port}"


def test_other_paths_reach_every_stream_upstream_unchanged(
    nginx: Nginx, upstreams: dict[str, Upstream]
) -> None:
    """/index/u/p goes, path unchanged, to the stream services, spread over all of them."""
    answers = {httpx.get(f"{nginx.url}/index/u{i}/p").text for i in range(8)}
    assert {answer.split()[0] for answer in answers} == {"stream-a", "stream-b"}
    assert {answer.split()[1] for answer in answers} == {f"/index/u{i}/p" for i in range(8)}
    assert not any(path.startswith("/index") for path, _ in upstreams["main"].seen)


def test_event_stream_is_passed_through_unbuffered(
    nginx: Nginx, upstreams: dict[str, Upstream]
) -> None:
    """The first event reaches the client while the upstream is still writing the stream."""
    for up in upstreams.values():
        up.release.clear()
    with httpx.stream("GET", f"{nginx.url}/stream/events", timeout=5) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line)
        assert first == "data: first"  # arrived before the upstream was allowed to finish
        assert not any(up.release.is_set() for up in upstreams.values())
        for up in upstreams.values():
            up.release.set()
        assert [line for line in lines if line] == ["data: last"]


def test_reload_applies_new_stream_upstreams(nginx: Nginx, upstreams: dict[str, Upstream]) -> None:
    """reload() rewrites the config and new requests follow it (runs last: it narrows routing)."""
    nginx.reload(stream_upstreams=[upstreams["stream-b"].address])
    nginx.wait_until(
        lambda: all(
            httpx.get(f"{nginx.url}/probe{i}").text.startswith("stream-b") for i in range(4)
        ),
        timeout=10,
    )
    answers = {httpx.get(f"{nginx.url}/after-reload/{i}").text.split()[0] for i in range(6)}
    assert answers == {"stream-b"}
