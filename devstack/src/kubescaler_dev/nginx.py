"""Debian's nginx as the local single entry point, routed like the Kubernetes Ingress.

``/main/...`` goes to the main service with the ``/main`` prefix stripped; every other path
goes, unchanged, to the stream services (least connections first: streams are long-lived).
Responses are passed through unbuffered so Server-Sent Events arrive as they are written.
The access log leaves out query strings and Referer headers, where tokens may travel.
"""

from __future__ import annotations

import http.client
import os
import resource
import shutil
import signal
from collections.abc import Sequence
from pathlib import Path

from kubescaler_dev.proc import Proc, StartError

_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_MAX_OPEN_FILES = 8192  # a proxied stream holds two connections: client and upstream


def _open_files() -> int:
    """As many open files as the worker may raise its limit to, up to _MAX_OPEN_FILES."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return _MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, _MAX_OPEN_FILES)


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if Path(p).is_file()), None
    )
    if found is None:
        raise StartError("nginx not found: run `./dev setup` (it installs Debian's nginx)")
    return found


def _proxy_headers(indent: str) -> str:
    lines = [
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $http_host;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Host $http_host;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_buffering off;",
        # unbuffered, nginx moves a response through one buffer of this size: at the default
        # (one page) a 64 KiB event takes 16 reads and 16 writes (fewer system calls; its
        # effect on the burst benchmark was within that benchmark's run-to-run spread)
        "proxy_buffer_size 64k;",
        "proxy_buffers 4 64k;",  # (allocated only when buffering; must hold the busy size)
        "proxy_busy_buffers_size 128k;",
        "proxy_request_buffering off;",
        "proxy_connect_timeout 5s;",
        "proxy_read_timeout 1h;",
        "proxy_send_timeout 1h;",
    ]
    return "\n".join(indent + line for line in lines)


class Nginx(Proc):
    """One nginx master (and worker) on 127.0.0.1:port; config, pid, temp files and logs in home."""

    def __init__(
        self, home: Path, port: int, main_upstream: str, stream_upstreams: Sequence[str]
    ) -> None:
        if not stream_upstreams:
            raise ValueError("nginx needs at least one stream upstream")
        self.home = home
        self.port = port
        self.main_upstream = main_upstream
        self.stream_upstreams = list(stream_upstreams)
        argv = [
            nginx_binary(),
            "-p",
            f"{home.resolve()}/",
            "-c",
            str(self.config_file.resolve()),
            "-e",
            "stderr",
        ]
        super().__init__(f"nginx:{port}", argv, home / "logs" / "nginx.log")

    @property
    def config_file(self) -> Path:
        return self.home / "nginx.conf"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        home = self.home.resolve()
        temps = "\n".join(f"    {name}_temp_path {home / 'tmp' / name};" for name in _TEMP_DIRS)
        streams = "\n".join(
            f"        server {up} max_fails=1 fail_timeout=2s;" for up in self.stream_upstreams
        )
        # Workers run as the master's user; as root nginx would otherwise switch to "nobody".
        user = "user root;\n" if os.geteuid() == 0 else ""
        files = _open_files()
        return f"""# Written by kubescaler_dev.nginx on every start and reload: edits are lost.
{user}daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {files};
pid {home / "nginx.pid"};
error_log stderr warn;

events {{
    worker_connections {files // 2};
}}

http {{
    # the path without its query string, and no Referer: a token in ?access_token= (the web
    # client's stream) is never written down
    log_format kubescaler '$remote_addr [$time_local] "$request_method $uri $server_protocol" '
                          '$status $body_bytes_sent $request_time';
    access_log {home / "logs" / "access.log"} kubescaler;
{temps}
    default_type application/octet-stream;
    server_tokens off;

    upstream main {{
        server {self.main_upstream};
        keepalive 16;
    }}

    upstream stream {{
        zone stream 64k;
        least_conn;
{streams}
        keepalive 32;
    }}

    server {{
        listen 127.0.0.1:{self.port};

        location = /healthz {{
            access_log off;
            default_type text/plain;
            return 200 "ok";
        }}

        location = /main {{
            proxy_pass http://main/;
{_proxy_headers(" " * 12)}
            proxy_set_header X-Forwarded-Prefix /main;
        }}

        location /main/ {{
            proxy_pass http://main/;
{_proxy_headers(" " * 12)}
            proxy_set_header X-Forwarded-Prefix /main;
        }}

        location / {{
            proxy_pass http://stream;
{_proxy_headers(" " * 12)}
        }}
    }}
}}
"""

    def write_config(self) -> None:
        for sub in ("logs", *(f"tmp/{name}" for name in _TEMP_DIRS)):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config())

    def start(self) -> None:
        self.write_config()
        super().start()

    def ready(self) -> bool:
        """True when ``GET /healthz`` answers 200."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=0.5)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def start_ready(self, timeout: float = 10.0) -> None:
        self.start()
        self.wait_until(self.ready, timeout)

    def reload(
        self, main_upstream: str | None = None, stream_upstreams: Sequence[str] | None = None
    ) -> None:
        """Rewrite the config (optionally with new upstreams) and have the master reload it.

        Open streams stay on the old workers until they end; new requests see the new config.
        """
        if main_upstream is not None:
            self.main_upstream = main_upstream
        if stream_upstreams is not None:
            if not stream_upstreams:
                raise ValueError("nginx needs at least one stream upstream")
            self.stream_upstreams = list(stream_upstreams)
        self.write_config()
        if self.running and self.popen is not None:
            os.kill(self.popen.pid, signal.SIGHUP)  # the master only: it replaces its workers


__all__ = ["Nginx", "nginx_binary"]
