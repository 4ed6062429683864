"""kubescaler on the local cluster: an overlay of ``manifests/`` applied with the Gateway's TLS
Secret (``kubescaler-tls``, the certificate pki.py's Gateway CA signs: what cert-manager makes
on a real cluster), and awaited until its pods are ready and the Gateway answers through them
over HTTPS."""

from __future__ import annotations

import base64
import json
import ssl
import time
from pathlib import Path

import httpx

from kubescaler_dev.cluster import layout as net
from kubescaler_dev.cluster.images import ROOT
from kubescaler_dev.cluster.kubectl import Kubectl
from kubescaler_dev.cluster.pki import Pki
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
#: the Secret the Gateway's HTTPS listener and the Ingress serve (components/gateway, ingress)
TLS_SECRET = "kubescaler-tls"
_TLS_PORT = net.GATEWAY_TLS_PORT
GATEWAY = "https://127.0.0.1" + ("" if _TLS_PORT == 443 else f":{_TLS_PORT}")


def gateway_tls(pki: Pki) -> ssl.SSLContext:
    """What a client of the Gateway trusts: the Gateway's CA alone."""
    return ssl.create_default_context(cafile=pki.cert("gateway-ca").crt)


class App:
    def __init__(self, kubectl: Kubectl, progress: Progress, pki: Pki) -> None:
        self.kubectl = kubectl
        self.progress = progress
        self.pki = pki

    def apply_tls_secret(self) -> None:
        """The Gateway's certificate and key as the Secret ``kubescaler-tls`` (type
        kubernetes.io/tls), beside the pki it came from (a folder only we read)."""
        cert = self.pki.cert("gateway")
        data = {
            "tls.crt": base64.b64encode(cert.crt.read_bytes()).decode(),
            "tls.key": base64.b64encode(cert.key.read_bytes()).decode(),
        }
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": TLS_SECRET, "namespace": NAMESPACE},
            "data": data,
        }
        path = self.pki.dir / f"{TLS_SECRET}.json"
        path.write_text(json.dumps(secret))
        path.chmod(0o600)
        self.kubectl("apply", "--server-side", "-f", str(path), what="apply the TLS Secret")

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
        self.apply_tls_secret()
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
            f"kubescaler is up: {GATEWAY}/ (dashboard), {GATEWAY}/main/profiles "
            f"(the certificate's CA: {self.pki.cert('gateway-ca').crt})"
        )

    def wait_gateway(self, timeout: float = 180, headers: dict[str, str] | None = None) -> None:
        """Ready pods are not yet reachable ones: Traefik learns the endpoints a moment later,
        and on a first start base may still be making the keyspace. Wait until each of
        GATEWAY_CHECKS answers 200 through the Gateway."""
        base = GATEWAY
        deadline = time.monotonic() + timeout
        tls = gateway_tls(self.pki)
        with httpx.Client(base_url=base, timeout=10, headers=headers, verify=tls) as http:
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
