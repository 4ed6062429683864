"""What the cluster tests share: kubectl, the Gateway's address, pairs, sessions."""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any

from kubescaler.devstack.cluster import layout
from kubescaler.devstack.cluster.stack import NAMESPACE, Cluster

GATEWAY = f"http://127.0.0.1:{layout.GATEWAY_PORT}"


class Kube:
    """kubectl with the cluster's admin kubeconfig."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def run(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        lay = self.cluster.lay
        argv = [str(lay.bin("kubernetes", "kubectl")), f"--kubeconfig={lay.kubeconfig}", *args]
        done = subprocess.run(
            argv, capture_output=True, text=True, input=input, timeout=180, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def ns(self, *args: str) -> Any:
        return self.json("-n", NAMESPACE, *args)


@dataclass(frozen=True)
class Pair:
    user: str
    profile: str

    def path(self, session: str) -> str:
        return f"/stream/{self.user}/{self.profile}?session={session}"


def session(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"
