"""Write this pod's ``controller.kubernetes.io/pod-deletion-cost`` through the Kubernetes API.

A ReplicaSet scaling down removes the pods with the lowest cost first. One merge PATCH of the
pod's own metadata, authenticated with the pod's service-account token (re-read on every call:
the kubelet rotates it), verified against the service account's ``ca.crt`` when there is one.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import quote

import httpx
import msgspec

from kubescaler.settings import StreamSettings

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
MERGE_PATCH = "application/merge-patch+json"
_INT32_MAX = 2**31 - 1  # the annotation is an int32


class PodCostConfigError(ValueError):
    """The pod cannot name itself or find the API server (not in a cluster, or misconfigured)."""


def cost_patch(cost: int) -> bytes:
    """The JSON merge patch setting the annotation to ``cost`` (a string, clamped to int32)."""
    value = str(max(-_INT32_MAX - 1, min(_INT32_MAX, cost)))
    return msgspec.json.encode({"metadata": {"annotations": {ANNOTATION: value}}})


class PodCostClient:
    """PATCHes one pod's deletion cost; errors are httpx's (the caller counts and logs them)."""

    def __init__(self, cfg: StreamSettings) -> None:
        sa = Path(cfg.kube_sa_dir)
        if not cfg.pod_name:
            raise PodCostConfigError("KUBESCALER_STREAM_POD_NAME is empty")
        if not cfg.kube_api_url:
            raise PodCostConfigError(
                "no API server: KUBERNETES_SERVICE_HOST and KUBESCALER_STREAM_KUBE_API_URL unset"
            )
        try:
            namespace = (sa / "namespace").read_text().strip()
        except OSError as exc:
            raise PodCostConfigError(f"no namespace in {sa}: {exc}") from exc
        self.token_file = sa / "token"
        self.path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(cfg.pod_name)}"
        ca = sa / "ca.crt"
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca)) if ca.is_file() else True
        )
        self.http = httpx.AsyncClient(
            base_url=cfg.kube_api_url, verify=verify, timeout=cfg.pod_cost_timeout_s
        )

    async def set_cost(self, cost: int) -> None:
        """One PATCH; raises httpx.HTTPError (or OSError for the token) when it did not land."""
        token = self.token_file.read_text().strip()  # a small tmpfs file
        response = await self.http.patch(
            self.path,
            content=cost_patch(cost),
            headers={"Authorization": f"Bearer {token}", "Content-Type": MERGE_PATCH},
        )
        response.raise_for_status()

    async def close(self) -> None:
        await self.http.aclose()
