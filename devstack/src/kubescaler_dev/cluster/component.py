"""What every process of the local cluster shares: a child with a log, a readiness check, a
recorded PID; and the kubeconfig and TLS helpers the components use to reach the API server.

A component is one process of this machine (etcd, the API server, a node's kubelet, ...):
``prepare`` writes its config files, ``start`` runs it in its own session with its output in
``<run>/logs/<name>.log``, ``ready`` says when it serves, ``stop`` ends it (through its
recorded PID, so ``down`` works from another process too).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import time
from pathlib import Path

import httpx

from kubescaler_dev.cluster.layout import API_PORT, HOST_IP
from kubescaler_dev.cluster.pki import Cert, Pki
from kubescaler_dev.proc import Proc


class Component(Proc):
    """A cluster process: ``name``, ``argv``, log ``<logs>/<name>.log``, ``ready()``."""

    def __init__(
        self, name: str, logs: Path, argv: list[str], env: dict[str, str] | None = None
    ) -> None:
        super().__init__(name, argv, logs / f"{name.replace('/', '-')}.log", env=env)

    def prepare(self) -> None:
        """Write config files before start (default: nothing)."""

    def ready(self) -> bool:
        raise NotImplementedError


def write_kubeconfig(path: Path, ca: Path, cert: Cert, server: str | None = None) -> Path:
    """A kubeconfig (JSON is YAML) naming the API server, the CA and a client certificate."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kubescaler-local",
                "cluster": {
                    "server": server or f"https://{HOST_IP}:{API_PORT}",
                    "certificate-authority": str(ca),
                },
            }
        ],
        "users": [
            {
                "name": cert.name,
                "user": {"client-certificate": str(cert.crt), "client-key": str(cert.key)},
            }
        ],
        "contexts": [
            {
                "name": "kubescaler-local",
                "context": {"cluster": "kubescaler-local", "user": cert.name},
            }
        ],
        "current-context": "kubescaler-local",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path


def https_ok(url: str, pki: Pki, cert: str = "admin") -> bool:
    """GET ``url`` with a client certificate, checked against the cluster CA: 200?"""
    ctx = ssl.create_default_context(cafile=str(pki.cert("ca").crt))
    client = pki.cert(cert)
    ctx.load_cert_chain(str(client.crt), str(client.key))
    return httpx.get(url, verify=ctx, timeout=2.0).status_code == 200


def http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2.0).status_code == 200


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def stop_group(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM the process group of ``pid``, then SIGKILL what is left after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
