"""What the cluster tests share: kubectl, the Gateway's address, pairs, sessions."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubescaler_dev.cluster import app, layout
from kubescaler_dev.cluster.pki import Pki
from kubescaler_dev.cluster.stack import NAMESPACE, Cluster

#: the Gateway over HTTPS, as users reach it; plain HTTP only redirects there
GATEWAY = app.GATEWAY
GATEWAY_HTTP = f"http://127.0.0.1:{layout.GATEWAY_PORT}"


def tls() -> ssl.SSLContext:
    """Trust the local Gateway's CA (pki.py), as a user of https://127.0.0.1 does."""
    return app.gateway_tls(Pki(layout.Layout(layout.default_cache()).pki))


class Kube:
    """kubectl with the cluster's admin kubeconfig."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def run(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        lay = self.cluster.lay
        argv = [str(lay.bin("kubernetes", "kubectl")), f"--kubeconfig={lay.kubeconfig}", *args]
        done = subprocess.run(
            argv, capture_output=True, text=True, input=input, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def ns(self, *args: str) -> Any:
        return self.json("-n", NAMESPACE, *args)

    def clear_namespace(self) -> None:
        """kubescaler's namespace deleted without waiting out its pods' grace (Cassandra's
        120 s drain, the streams' preStop pause): the tests throw the deployment away and
        start the next on recycled volumes. Once the namespace is terminating no controller
        may make a pod in it, so a delete with a 1 s grace ends each for good; the wait is
        for the namespace itself to be gone."""
        self.run("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")
        self.run(
            "-n", NAMESPACE, "delete", "pods", "--all", "--grace-period=1", "--wait=false",
            "--ignore-not-found", check=False,
        )  # fmt: skip
        self.run(
            "wait", "--for=delete", f"namespace/{NAMESPACE}", "--timeout=300s", timeout=320,
            check=False,
        )  # fmt: skip
        gone = self.run("get", "namespace", NAMESPACE, "--ignore-not-found", "-o", "name")
        assert not gone.stdout.strip(), f"namespace {NAMESPACE} still there after 300 s"


@dataclass(frozen=True)
class Pair:
    user: str
    profile: str

    def path(self, session: str) -> str:
        return f"/stream/{self.user}/{self.profile}?session={session}"


def session(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")


async def await_for(what: str, check: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")


def ready_pods(kube: Kube, app: str) -> list[dict[str, Any]]:
    pods = kube.ns("get", "pods", "-l", f"app.kubernetes.io/name={app}")["items"]
    return [
        p
        for p in pods
        if p["metadata"].get("deletionTimestamp") is None
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    ]


def redis_password(kube: Kube, user: str) -> str:
    """The password of Redis ACL user ``user`` (the Secret kubescaler-redis: generated, with a
    hash after its name, by the dev overlay; made out of band for production)."""
    for item in kube.ns("get", "secrets")["items"]:
        if item["metadata"]["name"].startswith("kubescaler-redis"):
            return base64.b64decode(item["data"][user]).decode()
    raise AssertionError("no kubescaler-redis Secret in the namespace")


def replay_verify(kube: Kube) -> str:
    """`kubescaler replay --verify` inside the cluster, against the cluster's Redis, as the
    Redis user `replay` (the lock-keeper pod's own user may not read the log)."""
    login = [
        "KUBESCALER_REDIS_USERNAME=replay",
        f"KUBESCALER_REDIS_PASSWORD={redis_password(kube, 'replay')}",
    ]
    done = kube.run(
        "-n", NAMESPACE, "exec", "deploy/lock-keeper", "-c", "lock-keeper", "--",
        "env", *login, "kubescaler", "replay", "--verify", check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
