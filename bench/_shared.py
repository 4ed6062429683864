"""What the benchmarks share: percentiles, the table, the machine, and a private backend.

:class:`Backend` starts Redis, a Cassandra node, base, main, a lock-keeper and one stream
process on free ports under a temporary folder, and stops them; ``bench/run.py`` starts one
and hands it to each benchmark so Cassandra boots once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import uvloop
import yaml

from kubescaler_dev.cassandra import CassandraNode, provision
from kubescaler_dev.nginx import Nginx
from kubescaler_dev.proc import Proc, free_port
from kubescaler_dev.redis import RedisServer
from kubescaler_dev.services import Service, start_service

ROOT = Path(__file__).resolve().parent.parent
CASSANDRA_LIB = ROOT / ".local" / "cassandra" / "lib"

Row = tuple[str, str]
T = TypeVar("T")


def run_client(coro: Coroutine[Any, Any, T]) -> T:
    """Run a benchmark's client on uvloop, as the services run (``settings.server.loop``).

    Asyncio's own loop wakes a sleeper ~1.2 ms late here (p50; 2.3 ms p99, measured on this
    machine: it rounds a wait up to whole milliseconds), which an open loop would count as
    latency of the system under test; uvloop wakes it ~0.2 ms late. Time with
    ``time.perf_counter()``: uvloop's ``loop.time()`` counts whole milliseconds."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def pct(samples: list[float], q: float) -> float:
    """The q-quantile of ``samples`` (seconds) in milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def print_table(rows: list[Row], header: tuple[str, str] = ("measure", "value")) -> None:
    width = max(len(k) for k, _ in [*rows, header])
    print(f"{header[0]:<{width}}  {header[1]}")
    print(f"{'-' * width}  {'-' * max(5, len(header[1]))}")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def machine() -> list[Row]:
    """CPU model, cores, memory, OS and the versions that shape the numbers."""
    cpu = "unknown"
    with Path("/proc/cpuinfo").open() as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    os_name = platform.platform()
    with open("/etc/os-release") as f:
        found = re.search(r'PRETTY_NAME="([^"]+)"', f.read())
        os_name = found.group(1) if found else os_name
    java = subprocess.run(
        ["java", "-version"], capture_output=True, text=True, check=False
    ).stderr.split("\n", 1)[0]
    redis = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[2:3]
    load1 = os.getloadavg()[0]
    return [
        ("machine: CPU", f"{cpu}, {os.cpu_count()} cores"),
        ("machine: memory", f"{int(mem) / 2**20:.1f} GiB"),
        ("machine: OS, kernel", f"{os_name}, {platform.release()}"),
        (
            "versions",
            f"Python {platform.python_version()}, kubescaler {metadata.version('kubescaler')}, "
            f"litestar {metadata.version('litestar')}, uvicorn {metadata.version('uvicorn')} "
            f"(uvloop {metadata.version('uvloop')}, httptools {metadata.version('httptools')}), "
            f"granian {metadata.version('granian')}, "
            f"redis-server {''.join(redis).removeprefix('v=')}, Cassandra 5.0 ({java})",
        ),
        ("machine: load average at start (1 min)", f"{load1:.2f}"),
    ]


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process (every thread), from /proc/<pid>/stat, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (every thread), from /proc/<pid>/stat."""
    return sum(cpu_split(pid))


def tree_cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process and of its live descendants (a server's worker processes)."""
    user = system = 0.0
    todo = [pid]
    while todo:
        one = todo.pop()
        with contextlib.suppress(OSError):
            u, s = cpu_split(one)
            user, system = user + u, system + s
            for task in Path(f"/proc/{one}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return user, system


def metric(url: str, name: str) -> float:
    """The value of one unlabelled Prometheus sample at ``url``/metrics."""
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


class Backend:
    """Redis, Cassandra, base, main, a lock-keeper and one stream process, on free ports."""

    def __init__(self, workdir: Path, stream_env: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir
        self.stream_env = dict(stream_env or {})
        self.started: list[Proc] = []
        self.env: dict[str, str] = {}

    def _up(self, proc: Proc, ready: object, timeout: float = 60) -> None:
        proc.start()
        self.started.append(proc)
        proc.wait_until(ready, timeout)  # type: ignore[arg-type]

    def start(self) -> None:
        logs = self.workdir / "logs"
        self.redis = RedisServer(free_port(), self.workdir / "redis", persist=False)
        self._up(self.redis, self.redis.ping)
        self.cassandra = CassandraNode(
            self.workdir / "cassandra",
            native_port=free_port(),
            storage_port=free_port(),
            lib_dir=CASSANDRA_LIB,
        )
        self._up(self.cassandra, self.cassandra.ready, timeout=240)
        login = provision(self.cassandra, "kubescaler_bench")
        env = self.env = {
            "KUBESCALER_REDIS_URL": self.redis.url,
            "KUBESCALER_CASSANDRA_PORT": str(self.cassandra.native_port),
            "KUBESCALER_CASSANDRA_USERNAME": login.username,
            "KUBESCALER_CASSANDRA_PASSWORD": login.password,
            "KUBESCALER_CASSANDRA_KEYSPACE": "kubescaler_bench",
            "KUBESCALER_LOG_LEVEL": "warning",
        }
        self.base = self._service("base", env, logs)
        env["KUBESCALER_BASE_URL"] = self.base.url  # self.env: what every later process gets
        self.main = self._service("main", env, logs)
        self.keeper = self._service("lock-keeper", env, logs)
        self.stream = self._service("stream", {**env, **self.stream_env}, logs)

    def _service(self, command: str, env: dict[str, str], logs: Path) -> Service:
        svc = start_service(command, env, logs)
        self.started.append(svc)
        return svc

    def add_stream(self, env: Mapping[str, str]) -> Service:
        """One more `kubescaler stream` on this backend, with ``env`` on top (stopped with it)."""
        return self._service("stream", {**self.env, **env}, self.workdir / "logs")

    def add_service(self, command: str, env: Mapping[str, str]) -> Service:
        """One more `kubescaler <command>` on this backend, with ``env`` on top."""
        return self._service(command, {**self.env, **env}, self.workdir / "logs")

    def add_http(self, name: str, argv: list[str], port: int, env: Mapping[str, str]) -> Served:
        """Any HTTP server on ``port`` (``argv``, with this backend's ``env`` and ``env`` on
        top), ready when its /healthz answers 200; stopped with the backend."""
        proc = Served(name, argv, port, self.workdir / "logs" / f"{name}.log", {**self.env, **env})
        self._up(proc, proc.ready, timeout=60)
        return proc

    def gateway(self, streams: list[Service]) -> Nginx:
        """An nginx entry point in front of main and ``streams`` (stopped with the backend)."""
        nginx = Nginx(
            self.workdir / f"nginx-{len(self.started)}",
            free_port(),
            f"127.0.0.1:{self.main.port}",
            [f"127.0.0.1:{s.port}" for s in streams],
        )
        self._up(nginx, nginx.ready, timeout=20)
        return nginx

    def new_pairs(self, shared_users: int) -> list[tuple[str, str]]:
        """Create ``shared_users`` users bound to two profiles each (100 users a profile) and
        return their pairs (user, profile): only these, none an earlier run may still lock."""
        with httpx.Client(base_url=self.main.url, timeout=300) as main:

            def suggested() -> set[tuple[str, str]]:
                got = main.get("/suggested")
                got.raise_for_status()
                return {(s["id"], p) for s in got.json() for p in s["profiles"]}

            before = suggested()
            params = {
                "users": shared_users,
                "profiles": max(2, shared_users * 2 // 100),
                "users_per_profile": 1,
                "shared_users": shared_users,
                "profiles_per_shared_user": 2,
            }
            main.post("/testdata", params=params).raise_for_status()
            pairs = sorted(suggested() - before)
        assert len(pairs) == 2 * shared_users, f"{len(pairs)} new pairs"
        return pairs

    def stop(self) -> None:
        while self.started:
            self.started.pop().stop(timeout=60)


class Served(Proc):
    """A benchmark's own HTTP process (the floor app, a service under another server)."""

    def __init__(self, name: str, argv: list[str], port: int, log: Path, env: dict[str, str]):
        super().__init__(name, argv, log, env=env, cwd=ROOT / "bench")
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200


@contextmanager
def backend(stream_env: Mapping[str, str] | None = None) -> Iterator[Backend]:
    workdir = Path(tempfile.mkdtemp(prefix="kubescaler-bench-", dir=ROOT / ".local"))
    stack = Backend(workdir, stream_env)
    try:
        started = time.perf_counter()
        stack.start()
        print(f"bench: backend up in {time.perf_counter() - started:.0f} s ({workdir})", flush=True)
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / tick, sum(fields) / tick


#: The first message seen of each kind of refusal ("503 redis": its body's detail), for the
#: benchmarks to print: a count of 503s says little without what they said.
REFUSALS: dict[str, str] = {}


def content_length(head: bytes) -> int | None:
    """The Content-Length of a response head (status line and headers), if it has one."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return None


async def refusal(head: bytes, reader: asyncio.StreamReader) -> str:
    """What a non-200 answer was, from its status line and JSON body: "503 base", "409", ...
    (its detail noted in REFUSALS)."""
    status = head.split(b" ", 2)[1].decode()
    length = content_length(head) or 0
    body = await reader.readexactly(length) if length else b""
    kind, detail = status, body[:300].decode(errors="replace")
    with contextlib.suppress(ValueError, AttributeError):
        got = msgspec.json.decode(body)
        detail = str(got.get("detail", detail))
        if dependency := got.get("dependency"):
            kind = f"{status} {dependency}"
    REFUSALS.setdefault(kind, detail)
    return kind


UVLOOP = {"KUBESCALER_SERVER_LOOP": "uvloop", "KUBESCALER_SERVER_HTTP": "httptools"}
ASYNCIO = {"KUBESCALER_SERVER_LOOP": "asyncio", "KUBESCALER_SERVER_HTTP": "h11"}
#: The server stacks the benchmarks compare: (name, server, environment). The first is
#: production's (the backend's own processes run on it); the others get servers of their own.
STACKS: list[tuple[str, str, dict[str, str]]] = [
    ("uvicorn, uvloop + httptools", "uvicorn", UVLOOP),
    ("uvicorn, asyncio + h11", "uvicorn", ASYNCIO),
    ("granian, uvloop", "granian", UVLOOP),
]


class NoCpuLimit(Exception):
    """This machine gives the benchmark no cgroup it may limit a process's CPU with."""


def _cpu_cgroup_root() -> tuple[Path, str]:
    """Where CPU cgroups are made here, and which version: cgroup v1's ``cpu`` hierarchy, or
    cgroup v2's root with the ``cpu`` controller on."""
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").exists():
        return v1, "v1"
    v2 = Path("/sys/fs/cgroup")
    controllers = v2 / "cgroup.subtree_control"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return v2, "v2"
    raise NoCpuLimit("no cgroup v1 cpu hierarchy, and cgroup v2's root does not delegate cpu")


def _own_cgroup(pid: int, root: Path, version: str) -> Path:
    """The CPU cgroup ``pid`` is in now, as a folder under ``root``."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (version == "v1" and "cpu" in controllers.split(",")) or (
            version == "v2" and controllers == ""
        ):
            return root / path.lstrip("/")
    raise NoCpuLimit(f"process {pid} is in no {version} cpu cgroup")


@contextmanager
def cpu_limited(pid: int, millicores: int, name: str) -> Iterator[None]:
    """Hold process ``pid`` (every thread) to ``millicores`` of CPU, as a Kubernetes pod's
    CPU limit does (the same CFS quota, per 100 ms period), in a cgroup of its own; on exit
    put it back where it was and remove the cgroup, so the machine is left as it was.
    Raises :class:`NoCpuLimit` where this cannot be done (no cgroup, not root)."""
    root, version = _cpu_cgroup_root()
    home = _own_cgroup(pid, root, version)
    group = root / f"kubescaler-bench-{os.getpid()}-{name}"
    try:
        group.mkdir()
    except OSError as exc:
        raise NoCpuLimit(f"cannot make a cgroup in {root}: {exc.strerror}") from exc
    try:
        quota = millicores * 100  # µs of CPU per 100,000 µs period
        try:
            if version == "v1":
                (group / "cpu.cfs_period_us").write_text("100000")
                (group / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (group / "cpu.max").write_text(f"{quota} 100000")
            (group / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            raise NoCpuLimit(f"cannot limit process {pid} in {group}: {exc.strerror}") from exc
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # it exited: the cgroup is empty anyway
                (home / "cgroup.procs").write_text(str(pid))
    finally:
        group.rmdir()


def cpu_limit_of(manifest: Path, container: str) -> int:
    """The CPU limit, in millicores, of ``container`` in a Kubernetes manifest file."""
    for doc in yaml.safe_load_all(manifest.read_text()):
        spec = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []):
            if c["name"] == container:
                cpu = str(c["resources"]["limits"]["cpu"])
                return int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)
    raise ValueError(f"no container {container!r} with a CPU limit in {manifest}")
