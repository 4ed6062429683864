"""Every setting kubescaler reads, in one place.

Settings come from environment variables prefixed ``KUBESCALER_``. A top-level field ``x`` is
read from ``KUBESCALER_X``; a field ``y`` of the section ``s`` from ``KUBESCALER_S_Y``. Lists are
comma-separated. Defaults work for the local system (`./dev up`).

Nothing else in the package reads the environment: entrypoints call :func:`load` once and pass
the result down, so tests build apps with settings of their own.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from kubescaler.logs import LogFormat
from kubescaler.settings_cassandra import CassandraSettings
from kubescaler.settings_redis import RedisSettings

PREFIX = "KUBESCALER_"
_REPO = Path(__file__).resolve().parents[2]  # src/kubescaler/settings.py -> the checkout


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


Env = Literal["development", "production"]  # production: settings_production.check


class BaseClientSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: Annotated[str, _doc("Where main and stream reach the base service.")] = (
        "http://127.0.0.1:8081"
    )
    timeout_s: Annotated[float, _doc("Timeout of one request to base, in seconds.")] = 3.0
    retries: Annotated[
        int, _doc("Extra attempts to connect to base when a connection is refused or times out.")
    ] = 2


class LockSettings(msgspec.Struct, frozen=True, kw_only=True):
    ttl_ms: Annotated[int, _doc("Lock and launched-marker TTL without a refresh, in ms.")] = 60_000
    refresh_interval_ms: Annotated[int, _doc("How often a holder refreshes its lock, in ms.")] = (
        20_000
    )
    clock_drift_factor: Annotated[float, _doc("Redlock clock drift factor (TTL share).")] = 0.01
    command_stream: Annotated[str, _doc("Redis Stream carrying lock commands.")] = (
        "kubescaler:lock:commands"
    )
    command_group: Annotated[str, _doc("Consumer group of the lock-keepers.")] = "lock-keeper"
    command_maxlen: Annotated[int, _doc("Rough cap on the command stream's length.")] = 100_000
    log_stream: Annotated[str, _doc("Append-only lock event log (a Redis Stream).")] = (
        "kubescaler:lock:log"
    )
    log_maxlen: Annotated[
        int, _doc("Approximate cap on the event log's length; 0 keeps every record.")
    ] = 1_000_000
    request_timeout_ms: Annotated[
        int, _doc("How long a requester waits for a lock outcome before answering 503, in ms.")
    ] = 3_000
    claim_idle_ms: Annotated[
        int, _doc("A command pending this long is claimed by any keeper (a fallback), in ms.")
    ] = 5_000
    heartbeat_interval_ms: Annotated[
        int, _doc("How often a keeper renews its heartbeat and looks for silent keepers, in ms.")
    ] = 100
    heartbeat_ttl_ms: Annotated[
        int, _doc("A keeper whose heartbeat is this old has its commands taken over, in ms.")
    ] = 500
    master_timeout_ms: Annotated[
        int, _doc("Redlock: longest wait for one master before it counts as down, in ms.")
    ] = 250
    applied_ttl_ms: Annotated[
        int, _doc("How long an applied command's outcome is kept to answer a redelivery, in ms.")
    ] = 600_000
    keeper_port: Annotated[
        int, _doc("Port of the lock-keeper's health and /metrics HTTP endpoint.")
    ] = 8085
    fencing: Annotated[
        Literal["quorum", "stream"],
        _doc("Fencing tokens from a quorum of the Redlock masters, or (older) the stream Redis."),
    ] = "quorum"


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True):
    loop: Annotated[
        Literal["uvloop", "asyncio"],
        _doc("Event loop of every HTTP process: `uvloop` (libuv) or Python's `asyncio`."),
    ] = "uvloop"
    http: Annotated[
        Literal["httptools", "h11"],
        _doc("HTTP/1.1 parser of every HTTP process: `httptools` (C) or `h11` (pure Python)."),
    ] = "httptools"


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    event_bytes: Annotated[int, _doc("Random payload per stream event, in bytes.")] = 65_536
    events_per_s: Annotated[
        float, _doc("Events per second per client; with event_bytes, about 2 MiB/s by default.")
    ] = 32.0
    queue_events: Annotated[
        int, _doc("Events buffered per client; when full, new events are dropped and counted.")
    ] = 4
    deadline_margin_ms: Annotated[
        int,
        _doc(
            "A stream sends no data later than its lock's expiry minus this (checked on every "
            "data event), for the clock difference between a stream and the lock-keeper, in ms."
        ),
    ] = 250
    release_on_disconnect: Annotated[
        bool,
        _doc("Free a pair at once on disconnect; false keeps it launched until its TTL (seed)."),
    ] = False
    drain_retry_ms: Annotated[
        int, _doc("SSE `retry` sent to clients told to reconnect when an instance drains.")
    ] = 500
    grace_s: Annotated[
        float, _doc("Most seconds a stopping stream process waits for its clients to go.")
    ] = 20.0
    web_dir: Annotated[
        str, _doc("The built web client (stream page, dashboard); empty = <repo>/frontend/dist.")
    ] = ""
    pod_deletion_cost: Annotated[
        bool,
        _doc(
            "Annotate this pod's `controller.kubernetes.io/pod-deletion-cost` with its live "
            "connections, so scale-down removes the least-loaded stream pods first."
        ),
    ] = False
    pod_name: Annotated[
        str, _doc("This pod's name (downward API `metadata.name`): the pod whose cost is set.")
    ] = ""
    pod_cost_interval_s: Annotated[
        float, _doc("Fewest seconds between two pod-deletion-cost updates of this pod.")
    ] = 10.0
    pod_cost_timeout_s: Annotated[
        float, _doc("Timeout of one pod-deletion-cost PATCH to the Kubernetes API, in seconds.")
    ] = 5.0
    kube_api_url: Annotated[
        str,
        _doc(
            "Kubernetes API server; empty = in-cluster "
            "`https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`."
        ),
    ] = ""
    kube_sa_dir: Annotated[
        str, _doc("Service-account folder holding `token`, `ca.crt` and `namespace`.")
    ] = "/var/run/secrets/kubernetes.io/serviceaccount"

    @property
    def web_path(self) -> Path:
        """Where the stream service finds the web client's build output."""
        return Path(self.web_dir) if self.web_dir else _REPO / "frontend" / "dist"


class AuthSettings(msgspec.Struct, frozen=True, kw_only=True):
    enabled: Annotated[
        bool,
        _doc(
            "Require a JWT on the public routes (streams, stream pages, main's lists and "
            "/login); off is the seed's open mode."
        ),
    ] = False
    algorithms: Annotated[
        list[str],
        _doc(
            "Accepted JWT algorithms (comma-separated): HS256/384/512 with `secret`, or "
            "RS*/PS*/ES*/EdDSA with `key_file`; never both kinds, never `none`."
        ),
    ] = msgspec.field(default_factory=lambda: ["HS256"])
    secret: Annotated[
        str,
        _doc(
            "HMAC key of HS* tokens (from a Secret on Kubernetes); `./dev up` sets the "
            "one it keeps in `.local/auth.key`."
        ),
    ] = ""
    key_file: Annotated[
        str,
        _doc(
            "The issuer's public key for RS*/PS*/ES*/EdDSA: a PEM file or a JWKS file (keys "
            "chosen by `kid`; re-read when a token names a `kid` it lacks)."
        ),
    ] = ""
    issuer: Annotated[str, _doc("The `iss` every token must carry; empty = not checked.")] = (
        "kubescaler-local"
    )
    audience: Annotated[str, _doc("The `aud` every token must carry; empty = not checked.")] = (
        "kubescaler"
    )
    leeway_s: Annotated[
        float, _doc("Clock skew allowed when checking `exp`, `nbf` and `iat`, in seconds.")
    ] = 30.0
    subject_claim: Annotated[str, _doc("Claim holding the kubescaler user id.")] = "sub"
    roles_claim: Annotated[
        str,
        _doc(
            "Claim holding the roles (a list, or a space-separated string); dots walk into "
            "objects, e.g. `realm_access.roles`."
        ),
    ] = "roles"
    admin_role: Annotated[
        str, _doc("Role that may use the mutating endpoints (test data) and any /login.")
    ] = "admin"
    public_lists: Annotated[
        bool,
        _doc("Let /main/users, /main/profiles and /main/suggested answer without a token."),
    ] = False
    cookie: Annotated[
        str, _doc("Cookie (HttpOnly) the web client's token travels in; read on GET only.")
    ] = "kubescaler_token"
    cookie_secure: Annotated[
        bool, _doc("Mark the token cookie Secure (sent over HTTPS only): on behind TLS.")
    ] = False


class LimitSettings(msgspec.Struct, frozen=True, kw_only=True):
    opens_per_session: Annotated[
        int,
        _doc(
            "Stream opens one session may make per `window_s` (a burst of that many, then "
            "evenly spread; kept in Redis, so across instances); 0 = no limit."
        ),
    ] = 30
    opens_per_address: Annotated[
        int,
        _doc(
            "Stream opens one client address may make per `window_s`; 0 = no limit (locally "
            "every client is 127.0.0.1)."
        ),
    ] = 0
    window_s: Annotated[float, _doc("The period of both stream-open limits, in seconds.")] = 60.0
    proxy_hops: Annotated[
        int,
        _doc(
            "Trusted proxies in front of the stream service: the client address is the "
            "N-th from the right of X-Forwarded-For; 0 = the connection's peer."
        ),
    ] = 0


def _in_cluster_api_url(env: Mapping[str, str]) -> str:
    """The API server's address as Kubernetes gives it to every pod ("" outside a cluster)."""
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        return ""
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    host: Annotated[str, _doc("Address every HTTP service binds to.")] = "127.0.0.1"
    gateway_port: Annotated[
        int, _doc("Port of the local entry point (nginx) for all public paths.")
    ] = 8080
    base_port: Annotated[int, _doc("Port of the base service.")] = 8081
    main_port: Annotated[int, _doc("Port of the main service.")] = 8082
    stream_port: Annotated[
        int, _doc("Port of the first stream instance; more count up from it.")
    ] = 8090
    instance: Annotated[
        str, _doc("Name of this process in streams, logs and metrics; empty = host:port.")
    ] = ""
    environment: Annotated[Env, _doc("`production` refuses placeholder secrets.")] = "development"
    admin_token: Annotated[
        str, _doc("When set, mutating endpoints require `Authorization: Bearer <token>`.")
    ] = ""
    max_body_bytes: Annotated[int, _doc("Largest request body accepted (413 above it).")] = (
        1_048_576
    )
    log_level: Annotated[str, _doc("Log level of every process.")] = "info"
    log_format: Annotated[
        LogFormat,
        _doc("`text` (time level logger: message) or `json` (one object per line; logs.py)."),
    ] = "text"
    local_state_dir: Annotated[
        str, _doc("Where `./dev up` keeps data and logs of the local system.")
    ] = ".local"
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    cassandra: CassandraSettings = msgspec.field(default_factory=CassandraSettings)
    base: BaseClientSettings = msgspec.field(default_factory=BaseClientSettings)
    lock: LockSettings = msgspec.field(default_factory=LockSettings)
    stream: StreamSettings = msgspec.field(default_factory=StreamSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)

    @property
    def process_name(self) -> str:
        """This process as a lock requester or lock-keeper: ``instance``, else host-pid."""
        return self.instance or f"{socket.gethostname()}-{os.getpid()}"


class SettingsError(ValueError):
    """A KUBESCALER_ variable holds a value of the wrong shape."""


#: the sections of :class:`Settings`, each read from ``KUBESCALER_<SECTION>_*``
SECTIONS: dict[str, type[msgspec.Struct]] = {
    "server": ServerSettings,
    "redis": RedisSettings,
    "cassandra": CassandraSettings,
    "base": BaseClientSettings,
    "lock": LockSettings,
    "stream": StreamSettings,
    "auth": AuthSettings,
    "limits": LimitSettings,
}


def struct_fields(struct: type[msgspec.Struct]) -> Iterator[msgspec.inspect.Field]:
    """The fields of a settings struct, each with its type and its ``_doc`` description."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    yield from info.fields


def env_name(section: str | None, field: str) -> str:
    """The variable a field is read from: ``("lock", "ttl_ms")`` -> KUBESCALER_LOCK_TTL_MS."""
    return PREFIX + (f"{section}_{field}" if section else field).upper()


def _raw(
    env: Mapping[str, str], section: str | None, struct: type[msgspec.Struct]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in struct_fields(struct):
        if section is None and f.name in SECTIONS:
            continue
        name = env_name(section, f.name)
        if name not in env:
            continue
        value: Any = env[name]
        kind = f.type.type if isinstance(f.type, msgspec.inspect.Metadata) else f.type
        if isinstance(kind, msgspec.inspect.ListType):
            value = [part.strip() for part in value.split(",") if part.strip()]
        out[f.name] = value
    return out


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``env`` (the process environment by default)."""
    env = os.environ if env is None else env
    raw = _raw(env, None, Settings)
    for section, struct in SECTIONS.items():
        raw[section] = _raw(env, section, struct)
    if not raw["stream"].get("kube_api_url"):  # empty: where Kubernetes says its API is
        raw["stream"]["kube_api_url"] = _in_cluster_api_url(env)
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if found := re.search(r"at `\$\.([a-z_]+)(?:\.([a-z_]+))?", message):
            first, second = found.groups()
            what = message.split(" - at", maxsplit=1)[0]
            if first in SECTIONS and not second:  # the section's own check, across its fields
                raise SettingsError(f"{env_name(first, '*')}: {what}") from exc
            name = env_name(first, second) if second else env_name(None, first)
            raise SettingsError(f"{name}={env.get(name, '')!r}: {what}") from exc
        raise SettingsError(f"bad KUBESCALER_ setting: {exc}") from exc
