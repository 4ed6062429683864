"""kubescaler's own processes (`kubescaler base`, `main`, ...) as local children."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from kubescaler_dev import logins
from kubescaler_dev.proc import Proc, free_port


class Service(Proc):
    """``kubescaler <command>`` listening on 127.0.0.1:port, ready when /readyz says so; with
    ``passwords`` (:mod:`.logins`) it logs in to Redis as its command's ACL user (what ``env``
    sets wins)."""

    def __init__(
        self,
        command: str,
        port: int,
        env: Mapping[str, str],
        log_dir: Path,
        name: str | None = None,
        args: tuple[str, ...] = (),
        passwords: Mapping[str, str] | None = None,
    ) -> None:
        self.port = port
        self.command = command
        argv = [sys.executable, "-m", "kubescaler.cli", command, *args]
        login = logins.service_env(command, passwords) if passwords else {}
        super().__init__(
            name or f"{command}:{port}",
            argv,
            log_dir / f"{name or command}-{port}.log",
            env={**login, **env},
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200

    def alive(self) -> bool:
        return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200

    def start_ready(self, timeout: float = 60.0, *, need_ready: bool = True) -> None:
        self.start()
        self.wait_until(self.ready if need_ready else self.alive, timeout)


def start_service(
    command: str,
    env: Mapping[str, str],
    log_dir: Path,
    name: str | None = None,
    passwords: Mapping[str, str] | None = None,
) -> Service:
    """``kubescaler <command>`` on a free port, started and ready (stopped again if it is not)."""
    port = free_port()
    args = ("--port", str(port))
    svc = Service(command, port, env, log_dir, name=name, args=args, passwords=passwords)
    try:
        svc.start_ready()
    except BaseException:
        svc.stop()
        raise
    return svc
