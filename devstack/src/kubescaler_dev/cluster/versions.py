"""Every pinned version of the local cluster, in one table.

Binaries are built from Go modules with the machine's Go; images are made from Debian
packages. A built artefact is cached under a key made of the versions (and recipe) it came
from, so changing a line here rebuilds exactly what it names and nothing else.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

KUBERNETES = "v1.37.2"
#: the version of k8s.io/api, client-go, ... that kubernetes' own go.mod points at ./staging for
KUBERNETES_STAGING = "v0.37.2"
ETCD = "v3.7.3"
CONTAINERD = "v2.2.9"
COREDNS = "v1.15.0"
METRICS_SERVER = "v0.8.0"
KEDA = "v2.21.0"
#: 3.7.x depends on Go modules the module proxy refuses (a nested local module, a fork at a
#: pseudo-version that is not served, two cloud SDKs); 3.6.12 builds from what is served.
TRAEFIK = "v3.6.12"
#: the Prometheus the manifests name (prom/prometheus:v2.55.1); Debian's 2.42 is built
#: without Kubernetes service discovery, which the in-cluster Prometheus needs
PROMETHEUS = "v2.55.1"
PROMETHEUS_MODULE = "v0.55.1"  # Prometheus tags its Go module v0.<minor>.<patch>
#: the NetworkPolicy enforcer: kube-router's network-policy controller (iptables + ipset), from
#: k3s's fork - the one k3s embeds. Upstream kube-router's module is served only at v2.1.0,
#: which has reported flaws; kube-network-policies needs nftables' `queue`, which this kernel
#: lacks (CONFIG_NFT_QUEUE off).
KUBE_ROUTER = "v2.6.3-k3s1"
#: the library prometheus-adapter is built on (its own module is not served by the module
#: proxy); the classic overlay's stand-in adapter, devstack/metrics-adapter, is built on it
CUSTOM_METRICS_APISERVER = "v1.37.0"
#: the Gateway API CRDs (standard channel) Traefik 3.6 implements
GATEWAY_API = "v1.4.1"
#: the Debian release every image's root filesystem comes from
DEBIAN_SUITE = "bookworm"
#: Cassandra's Maven artefact (the local node and the cluster's image run the same jars)
CASSANDRA = "5.0.8"
#: Debian bookworm's redis-server is 7.0.x (the cluster's Redis image and the local servers)
REDIS_DEBIAN = "7.0"
#: our own pod sandbox (a static C pause), named like the upstream one it replaces
PAUSE = "3.10"
#: the web client's build stage copies this machine's Node.js (20.19+); the tag says so
NODE_MAJOR = "20"
PYTHON = "3.11"
APP = "0.1.0"

#: the metrics adapter's own Go sources (its tests stay out: they change nothing built)
METRICS_ADAPTER_DIR = Path(__file__).resolve().parents[3] / "metrics-adapter"
_METRICS_ADAPTER_SOURCES = tuple(
    (f"cmd/metrics-adapter/{path.name}", path.read_text())
    for path in sorted(METRICS_ADAPTER_DIR.glob("*.go"))
    if not path.name.endswith("_test.go")
)
#: in the adapter's image tag, so that a change of its sources is a new image for the pod
_METRICS_ADAPTER_REVISION = hashlib.sha256(repr(_METRICS_ADAPTER_SOURCES).encode()).hexdigest()[:8]

#: every image the cluster runs or builds from, by role. Nothing is ever pulled: each is made
#: here (catalog.py) and imported into every node's containerd under exactly this reference.
IMAGES = {
    "pause": f"kubescaler.local/pause:{PAUSE}",
    "coredns": f"kubescaler.local/coredns:{COREDNS}",
    "metrics-server": f"kubescaler.local/metrics-server:{METRICS_SERVER}",
    "keda": f"kubescaler.local/keda:{KEDA}",
    "keda-adapter": f"kubescaler.local/keda-metrics-apiserver:{KEDA}",
    "traefik": f"kubescaler.local/traefik:{TRAEFIK}",
    "prometheus": f"kubescaler.local/prometheus:{PROMETHEUS}",
    "metrics-adapter": (
        f"kubescaler.local/metrics-adapter:{CUSTOM_METRICS_APISERVER}-{_METRICS_ADAPTER_REVISION}"
    ),
    "redis": f"kubescaler.local/redis:{REDIS_DEBIAN}-{DEBIAN_SUITE}",
    "cassandra": f"kubescaler.local/cassandra:{CASSANDRA}-{DEBIAN_SUITE}",
    # the Containerfile's two base images (build arguments; no pod runs them)
    "node": f"kubescaler.local/node:{NODE_MAJOR}-{DEBIAN_SUITE}",
    "python": f"kubescaler.local/python:{PYTHON}-{DEBIAN_SUITE}",
    # kubescaler's own, as the manifests name it (`kubescaler:0.1.0`)
    "kubescaler": f"docker.io/library/kubescaler:{APP}",
}


def _k8s_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return (
        f"-s -w -X {pkg}.gitVersion={version} -X {pkg}.gitMajor={major} "
        f"-X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
    )


@dataclass(frozen=True)
class GoBuild:
    """Binaries built from one Go module through a small wrapper module of our own.

    ``go install module/cmd@version`` refuses modules whose go.mod has ``replace`` lines; the
    wrapper requires the module, copies its replaces (a local-path one, like kubernetes'
    ``=> ./staging/src/k8s.io/api``, becomes the published module at ``local_replace_version``)
    and builds each binary with ``go build``.
    """

    name: str
    module: str
    version: str
    #: binary name -> import path of its main package
    binaries: dict[str, str]
    local_replace_version: str = ""
    #: replaced modules the proxy does not serve and the build does not need
    skip_replace: tuple[str, ...] = ()
    ldflags: str = "-s -w"
    tags: tuple[str, ...] = ()
    #: binaries that run in a ``FROM scratch`` image must be static
    static: bool = False
    #: Go files of the wrapper module itself (path -> source): a main package of our own,
    #: imported as ``kubescaler.local/<name>/<folder>`` in ``binaries``
    sources: tuple[tuple[str, str], ...] = ()
    #: when ``module`` is a fork whose go.mod still declares the original's path: that path,
    #: required by the wrapper and replaced by ``module`` at ``version``
    fork_of: str = ""

    @property
    def wrapper(self) -> str:
        """The wrapper module's path."""
        return f"kubescaler.local/{self.name}"

    @property
    def env(self) -> dict[str, str]:
        return {"CGO_ENABLED": "0"} if self.static else {}

    @property
    def key(self) -> str:
        """Folder name of this build's cache: the name, the version and a hash of the recipe."""
        recipe = repr(
            (
                self.module,
                self.version,
                sorted(self.binaries.items()),
                self.local_replace_version,
                self.skip_replace,
                self.ldflags,
                self.tags,
                self.static,
            )
            # only when there are any, so that the builds without sources keep their keys
            + ((self.sources,) if self.sources else ())
            + ((self.fork_of,) if self.fork_of else ())
        )
        return f"{self.name}-{self.version}-{hashlib.sha256(recipe.encode()).hexdigest()[:8]}"


_K8S_CMD = "k8s.io/kubernetes/cmd"

#: CoreDNS with the plugins the local cluster's Corefile uses (addons.COREFILE) and no others:
#: the full build's cloud DNS providers (their SDKs) are most of its compile time.
_COREDNS_MAIN = """package main

import (
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() { coremain.Run() }
"""

#: kube-router's network-policy controller alone (the way k3s runs it: no routing, no service
#: proxy), IPv4, in the network namespace it is started in
_NETPOL_MAIN = (Path(__file__).resolve().parents[3] / "netpol" / "main.go").read_text()

BUILDS: dict[str, GoBuild] = {
    build.name: build
    for build in (
        GoBuild(
            name="etcd",
            module="go.etcd.io/etcd/server/v3",
            version=ETCD,
            binaries={"etcd": "go.etcd.io/etcd/server/v3"},
            local_replace_version=ETCD,
        ),
        GoBuild(
            name="containerd",
            module="github.com/containerd/containerd/v2",
            version=CONTAINERD,
            binaries={
                "containerd": "github.com/containerd/containerd/v2/cmd/containerd",
                "containerd-shim-runc-v2": (
                    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
                ),
                "ctr": "github.com/containerd/containerd/v2/cmd/ctr",
            },
            tags=("no_btrfs", "no_devmapper", "no_zfs"),
        ),
        GoBuild(
            name="kubernetes",
            module="k8s.io/kubernetes",
            version=KUBERNETES,
            binaries={
                name: f"{_K8S_CMD}/{name}"
                for name in (
                    "kube-apiserver",
                    "kube-controller-manager",
                    "kube-scheduler",
                    "kubelet",
                    "kube-proxy",
                    "kubectl",
                )
            },
            local_replace_version=KUBERNETES_STAGING,
            skip_replace=("k8s.io/sample-cli-plugin", "k8s.io/sample-controller"),
            ldflags=_k8s_ldflags(KUBERNETES),
        ),
        GoBuild(
            name="coredns",
            module="github.com/coredns/coredns",
            version=COREDNS,
            binaries={"coredns": "kubescaler.local/coredns/cmd/coredns"},
            static=True,
            sources=(("cmd/coredns/main.go", _COREDNS_MAIN),),
        ),
        GoBuild(
            name="metrics-server",
            module="sigs.k8s.io/metrics-server",
            version=METRICS_SERVER,
            binaries={"metrics-server": "sigs.k8s.io/metrics-server/cmd/metrics-server"},
            static=True,
        ),
        GoBuild(
            name="keda",
            module="github.com/kedacore/keda/v2",
            version=KEDA,
            binaries={
                "keda": "github.com/kedacore/keda/v2/cmd/operator",
                "keda-adapter": "github.com/kedacore/keda/v2/cmd/adapter",
            },
            ldflags=f"-s -w -X github.com/kedacore/keda/v2/version.Version={KEDA.lstrip('v')}",
            static=True,
        ),
        GoBuild(
            name="prometheus",
            module="github.com/prometheus/prometheus",
            version=PROMETHEUS_MODULE,
            binaries={"prometheus": "github.com/prometheus/prometheus/cmd/prometheus"},
            ldflags=(
                f"-s -w -X github.com/prometheus/common/version.Version={PROMETHEUS.lstrip('v')}"
            ),
            tags=("netgo",),
            static=True,
        ),
        GoBuild(
            name="traefik",
            module="github.com/traefik/traefik/v3",
            version=TRAEFIK,
            binaries={"traefik": "github.com/traefik/traefik/v3/cmd/traefik"},
            ldflags=f"-s -w -X github.com/traefik/traefik/v3/pkg/version.Version={TRAEFIK}",
            static=True,
        ),
        GoBuild(
            name="metrics-adapter",
            module="sigs.k8s.io/custom-metrics-apiserver",
            version=CUSTOM_METRICS_APISERVER,
            binaries={"metrics-adapter": "kubescaler.local/metrics-adapter/cmd/metrics-adapter"},
            static=True,
            sources=_METRICS_ADAPTER_SOURCES,
        ),
        GoBuild(
            name="netpol",
            module="github.com/k3s-io/kube-router/v2",
            version=KUBE_ROUTER,
            fork_of="github.com/cloudnativelabs/kube-router/v2",
            binaries={"netpol": "kubescaler.local/netpol/cmd/netpol"},
            static=True,
            sources=(("cmd/netpol/main.go", _NETPOL_MAIN),),
        ),
    )
}

#: modules whose source (not a binary) the cluster reads: CRDs and KEDA's install manifests
SOURCES = {
    "gateway-api": ("sigs.k8s.io/gateway-api", GATEWAY_API),
    "keda": ("github.com/kedacore/keda/v2", KEDA),
}
