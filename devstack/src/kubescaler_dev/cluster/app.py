"""kubescaler on the local cluster: an overlay of ``manifests/`` applied, and awaited until its
pods are ready and the Gateway answers through them."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from kubescaler_dev.cluster import layout as net
from kubescaler_dev.cluster.images import ROOT
from kubescaler_dev.cluster.kubectl import Kubectl
from kubescaler_dev.cluster.progress import ClusterError, Progress

NAMESPACE = "kubescaler"
OVERLAYS = ROOT / "manifests" / "overlays"
#: the overlay `up` and `apply` deploy: the dev overlay with the few swaps this machine needs
LOCAL = OVERLAYS / "local"
#: the workloads of the dev overlay, in the order they come up
WORKLOADS = (
    "statefulset/redis",
    "statefulset/cassandra",
    "deployment/base",
    "deployment/main",
    "deployment/lock-keeper",
    "deployment/stream",
    "deployment/prometheus",
)
#: what must answer 200 through the Gateway before kubescaler counts as up: main with base
#: and Cassandra behind it, and a stream instance
GATEWAY_CHECKS = ("/main/profiles?limit=1", "/instance")


class App:
    def __init__(self, kubectl: Kubectl, progress: Progress) -> None:
        self.kubectl = kubectl
        self.progress = progress

    def apply(
        self,
        overlay: Path = LOCAL,
        restart: bool = False,
        workloads: tuple[str, ...] = WORKLOADS,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Apply ``overlay``; restart what runs an image that changed; wait until ``workloads``
        are ready and the Gateway answers (with ``headers``, when the overlay needs a token)."""
        self.progress.say(f"applying {overlay.relative_to(ROOT)}")
        self.kubectl.apply(str(overlay), what="apply kubescaler")
        if restart:
            self.kubectl(
                "-n", NAMESPACE, "rollout", "restart", "deployment,statefulset",
                what="restart on the new images",
            )  # fmt: skip
        self.wait(workloads=workloads, headers=headers)

    def wait(
        self,
        timeout: float = 600,
        workloads: tuple[str, ...] = WORKLOADS,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.progress.say(
            "waiting for kubescaler's pods (Cassandra's first start takes a minute or two)"
        )
        for workload in workloads:
            try:
                self.kubectl.rollout(NAMESPACE, workload, timeout)
            except ClusterError as exc:
                raise ClusterError(f"{exc}\n{self.kubectl.diagnose(NAMESPACE)}") from exc
        self.wait_gateway(headers=headers)
        self.progress.say(
            f"kubescaler is up: http://127.0.0.1:{net.GATEWAY_PORT}/ (dashboard), "
            f"http://127.0.0.1:{net.GATEWAY_PORT}/main/profiles"
        )

    def wait_gateway(self, timeout: float = 180, headers: dict[str, str] | None = None) -> None:
        """Ready pods are not yet reachable ones: Traefik learns the endpoints a moment later,
        and on a first start base may still be making the keyspace. Wait until each of
        GATEWAY_CHECKS answers 200 through the Gateway."""
        base = f"http://127.0.0.1:{net.GATEWAY_PORT}"
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=base, timeout=10, headers=headers) as http:
            for path in GATEWAY_CHECKS:
                while True:
                    try:
                        r = http.get(path)
                        if r.status_code == 200:
                            break
                        last = f"{r.status_code} {r.text[:300]}"
                    except httpx.HTTPError as exc:
                        last = repr(exc)
                    if time.monotonic() > deadline:
                        raise ClusterError(
                            f"the pods are ready but {base}{path} does not answer 200 after "
                            f"{timeout:.0f}s (last: {last})\n{self.kubectl.diagnose(NAMESPACE)}"
                        )
                    time.sleep(1)
