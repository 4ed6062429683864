"""The local cluster's certificates and keys, made with the machine's ``openssl``.

One cluster CA signs every serving and client certificate (API server, kubelet, each
control-plane client); a second CA signs the front proxy's client certificate, the identity
the API server uses towards aggregated APIs (KEDA's metrics adapter, metrics-server); a third,
the Gateway's CA, signs only the certificate the Gateway serves HTTPS with (``gateway-ca.crt``
is what a client of https://127.0.0.1 trusts, nothing of the cluster's). Keys are ECDSA P-256.
Made once per cluster folder: a running cluster keeps its identity.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from kubescaler_dev.cluster.layout import API_SERVICE_IP, CLUSTER_DOMAIN, HOST_IP, NodeNet
from kubescaler_dev.cluster.progress import ClusterError, run

DAYS = 3650

#: the CAs a leaf may name
CAS = {
    "ca": "kubescaler-local-ca",
    "front-proxy-ca": "kubescaler-local-front-proxy-ca",
    "gateway-ca": "kubescaler-local-gateway-ca",
}


@dataclass(frozen=True)
class Cert:
    """A key pair in ``<dir>/<name>.key`` and ``<dir>/<name>.crt``."""

    dir: Path
    name: str

    @property
    def crt(self) -> Path:
        return self.dir / f"{self.name}.crt"

    @property
    def key(self) -> Path:
        return self.dir / f"{self.name}.key"


@dataclass(frozen=True)
class Leaf:
    """What one certificate says: subject, SANs, and whether it serves, authenticates, or both."""

    name: str
    cn: str
    orgs: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    server: bool = False
    client: bool = True
    ca: str = "ca"


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise ClusterError("openssl not found: install Debian's openssl package")
    return found


class Pki:
    """Certificates under ``dir``; ``ensure`` makes whatever is missing."""

    def __init__(self, dir: Path) -> None:
        self.dir = dir

    def cert(self, name: str) -> Cert:
        return Cert(self.dir, name)

    def _key(self, path: Path) -> None:
        run(
            [
                _openssl(),
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                str(path),
            ],
            f"openssl genpkey {path.name}",
        )
        path.chmod(0o600)

    def _ca(self, name: str, cn: str) -> None:
        ca = self.cert(name)
        if ca.crt.is_file() and ca.key.is_file():
            return
        self._key(ca.key)
        run(
            [
                _openssl(),
                "req",
                "-x509",
                "-new",
                "-key",
                str(ca.key),
                "-subj",
                f"/CN={cn}",
                "-days",
                str(DAYS),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                "-out",
                str(ca.crt),
            ],
            f"openssl CA {name}",
        )

    def _leaf(self, leaf: Leaf) -> None:
        out = self.cert(leaf.name)
        if out.crt.is_file() and out.key.is_file():
            return
        ca = self.cert(leaf.ca)
        self._key(out.key)
        subject = "".join(f"/O={org}" for org in leaf.orgs) + f"/CN={leaf.cn}"
        usages = [u for u, on in (("serverAuth", leaf.server), ("clientAuth", leaf.client)) if on]
        ext = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={','.join(usages)}",
        ]
        sans = [f"DNS:{d}" for d in leaf.dns] + [f"IP:{ip}" for ip in leaf.ips]
        if sans:
            ext.append(f"subjectAltName={','.join(sans)}")
        ext_file = self.dir / f"{leaf.name}.ext"
        ext_file.write_text("\n".join(ext) + "\n")
        csr = self.dir / f"{leaf.name}.csr"
        run(
            [_openssl(), "req", "-new", "-key", str(out.key), "-subj", subject, "-out", str(csr)],
            f"openssl req {leaf.name}",
        )
        run(
            [
                _openssl(),
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(ca.crt),
                "-CAkey",
                str(ca.key),
                "-CAcreateserial",
                "-days",
                str(DAYS),
                "-extfile",
                str(ext_file),
                "-out",
                str(out.crt),
            ],
            f"openssl x509 {leaf.name}",
        )
        csr.unlink()
        ext_file.unlink()

    def service_account_keys(self) -> tuple[Path, Path]:
        """The key pair that signs service-account tokens (private, public)."""
        private, public = self.dir / "sa.key", self.dir / "sa.pub"
        if not (private.is_file() and public.is_file()):
            self._key(private)
            run(
                [_openssl(), "pkey", "-in", str(private), "-pubout", "-out", str(public)],
                "openssl pkey sa.pub",
            )
        return private, public

    def ensure(self, leaves: list[Leaf]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        for name, cn in CAS.items():
            self._ca(name, cn)
        for leaf in leaves:
            if leaf.ca not in CAS:
                raise ClusterError(f"unknown CA {leaf.ca!r} for {leaf.name}")
            self._leaf(leaf)
        self.service_account_keys()


def leaves(nodes: list[NodeNet]) -> list[Leaf]:
    """Every certificate a cluster of ``nodes`` uses."""
    api_dns = (
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
        "localhost",
    )
    control = [
        Leaf(
            "apiserver",
            "kube-apiserver",
            dns=api_dns,
            ips=("127.0.0.1", HOST_IP, API_SERVICE_IP),
            server=True,
            client=False,
        ),
        Leaf("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)),
        Leaf("admin", "kubernetes-admin", ("system:masters",)),
        Leaf("controller-manager", "system:kube-controller-manager"),
        Leaf("scheduler", "system:kube-scheduler"),
        Leaf("kube-proxy", "system:kube-proxy"),
        # the NetworkPolicy enforcer of every node (netpol.py: its ClusterRole names this CN)
        Leaf("netpol", "system:kubescaler-netpol"),
        Leaf("front-proxy-client", "front-proxy-client", ca="front-proxy-ca"),
        # the health endpoints of the two controllers, on 127.0.0.1, checked against the CA
        *(
            Leaf(f"{name}-server", name, dns=("localhost",), ips=("127.0.0.1",), server=True,
                 client=False)
            for name in ("kube-controller-manager", "kube-scheduler")
        ),
    ]  # fmt: skip
    per_node = [
        leaf
        for node in nodes
        for leaf in (
            Leaf(f"{node.name}-client", f"system:node:{node.name}", ("system:nodes",)),
            Leaf(
                f"{node.name}-server",
                node.name,
                dns=(node.name,),
                ips=(node.ip,),
                server=True,
                client=False,
            ),
        )
    ]
    # the Gateway's HTTPS: 127.0.0.1 through the load balancer; Traefik picks a certificate by
    # SNI, or without one (a client of an IP address sends none) by the address it was reached
    # on, a node's: every node's address is a SAN
    gateway = Leaf(
        "gateway",
        "kubescaler-gateway",
        dns=("localhost",),
        ips=("127.0.0.1", *(n.ip for n in nodes)),
        server=True,
        client=False,
        ca="gateway-ca",
    )
    return [*control, *per_node, gateway]
