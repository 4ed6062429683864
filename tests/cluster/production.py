"""Production as written (manifests/overlays/local-production: overlays/production with only
what cannot exist here swapped) on the three-node cluster, deployed once for test_production
and test_faults: the dev overlay's namespace goes first, the Secret production expects is made
out of band, as its docs say."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field

import httpx
from kubehelp import GATEWAY, Kube, tls

from kubescaler import redis_acl
from kubescaler.adapters.tokens import mint
from kubescaler.settings import AuthSettings
from kubescaler_dev.cluster.app import NAMESPACE, OVERLAYS
from kubescaler_dev.cluster.stack import Cluster

OVERLAY = OVERLAYS / "local-production"
SOMEONE = "00000000-0000-4000-8000-000000000000"
WORKLOADS = (
    "statefulset/redis",
    "statefulset/redis-lock",
    "statefulset/cassandra",
    "deployment/base",
    "deployment/main",
    "deployment/lock-keeper",
    "deployment/stream",
    "deployment/prometheus",
)


@dataclass
class Production:
    auth_secret: str
    admin_token: str
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def token(self, user: str, admin: bool = False) -> str:
        auth = AuthSettings(enabled=True, secret=self.auth_secret)
        return mint(auth, self.auth_secret, user, admin=admin, ttl_s=4 * 3600)

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}

    @property
    def admin(self) -> dict[str, str]:
        """An admin's JWT: test data, every list and any /login (the static admin token of
        the Secret opens the mutating endpoints only)."""
        return {"Authorization": f"Bearer {self.token(SOMEONE, admin=True)}"}


def _running(kube: Kube) -> Production | None:
    """Production as an earlier run left it (the cluster kept up): its Secret's keys."""
    if kube.run("-n", NAMESPACE, "get", "statefulset/redis-lock", check=False).returncode:
        return None
    data = kube.ns("get", "secret", "kubescaler-secrets")["data"]
    return Production(b64(data["auth-secret"]), b64(data["admin-token"]))


def b64(text: str) -> str:
    return base64.b64decode(text).decode()


def deploy(cluster: Cluster, kube: Kube) -> Production:
    """Replace whatever runs in the namespace with production (or take production as it
    runs), and make its test data."""
    prod = _running(kube)
    if prod is None:
        kube.clear_namespace()
        cluster.recycle_volumes()
        prod = Production(secrets.token_urlsafe(32), secrets.token_urlsafe(24))
        kube.run("create", "namespace", NAMESPACE)
        kube.run(
            "-n", NAMESPACE, "create", "secret", "generic", "kubescaler-secrets",
            f"--from-literal=admin-token={prod.admin_token}",
            f"--from-literal=cassandra-page-token-key={secrets.token_urlsafe(32)}",
            f"--from-literal=cassandra-password={secrets.token_urlsafe(24)}",
            f"--from-literal=cassandra-admin-password={secrets.token_urlsafe(24)}",
            f"--from-literal=auth-secret={prod.auth_secret}",
        )  # fmt: skip
        users = [*redis_acl.users("state"), "sentinels"]  # every Redis user, the Sentinels
        kube.run(
            "-n", NAMESPACE, "create", "secret", "generic", "kubescaler-redis",
            *(f"--from-literal={user}={secrets.token_urlsafe(24)}" for user in users),
        )  # fmt: skip
    cluster.app.apply(OVERLAY, workloads=WORKLOADS, headers=prod.headers(SOMEONE))
    with httpx.Client(base_url=GATEWAY, verify=tls(), timeout=120, headers=prod.admin) as http:
        assert http.delete("/main/testdata").status_code == 204
        made = http.post(
            "/main/testdata",
            params={"users": 900, "profiles": 800, "users_per_profile": 1, "shared_users": 20},
        )
        assert made.status_code == 201, made.text
        listed = http.get("/main/profiles", params={"limit": 5000})
        assert listed.status_code == 200, listed.text
        profiles = listed.json()
    prod.pairs = [(user, p["id"]) for p in profiles for user in p["users"]]
    return prod


def node_of(kube: Kube, pod: str) -> str:
    return str(kube.ns("get", "pod", pod)["spec"]["nodeName"])
