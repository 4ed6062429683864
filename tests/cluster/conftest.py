"""The local Kubernetes cluster for the whole session: started once from the cache, kubescaler
applied from manifests/overlays/local, everything reached through the Gateway (Traefik) on
127.0.0.1. A cluster that was already up is used as it is and left up."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import faults
import httpx
import pytest
from kubehelp import GATEWAY, Kube, Pair, tls
from production import Production, deploy

from kubescaler_dev.cluster.stack import Cluster

#: the order the cluster's modules run in: the dev overlay (what `./dev cluster up` deploys)
#: and its NetworkPolicies as enforced, then production as written on three nodes and its
#: faults, then the seed's classic way, then the teardown (it crashes the cluster and checks
#: the machine after)
ORDER = (
    "test_cluster.py",
    "test_edge.py",
    "test_networkpolicy.py",
    "test_store_replacement.py",
    "test_production.py",
    "test_faults.py",
    "test_classic.py",
    "test_teardown.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return ORDER.index(name) if name in ORDER else len(ORDER) - 1

    items.sort(key=rank)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--nodes",
        type=int,
        default=3,
        help="nodes of the local cluster the cluster tests start (default 3)",
    )
    parser.addoption(
        "--keep-cluster",
        action="store_true",
        help="leave the local cluster up after the cluster tests (the next run reuses it)",
    )


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The cluster, up (built from the cache on a warm machine), kubescaler applied and ready;
    stopped at the end of the session unless it was up before or --keep-cluster is given."""
    c = Cluster()
    with c.locked():  # the whole session: another test run on this machine waits its turn
        started_here = not c.running()
        if started_here:  # a running cluster is taken as it is, whatever overlay it runs
            c.up(nodes=request.config.getoption("--nodes"))
        yield c
        if started_here and not request.config.getoption("--keep-cluster"):
            assert c.down() == [], "the cluster did not stop cleanly"


@pytest.fixture(scope="session")
def kube(cluster: Cluster) -> Kube:
    return Kube(cluster)


@pytest.fixture(scope="session")
def admin_token(kube: Kube) -> str:
    for item in kube.ns("get", "secrets")["items"]:
        if item["metadata"]["name"].startswith("kubescaler-secrets"):
            return base64.b64decode(item["data"]["admin-token"]).decode()
    raise AssertionError("no kubescaler-secrets Secret in the namespace")


@pytest.fixture(scope="session")
def pairs(cluster: Cluster, admin_token: str) -> list[Pair]:
    """Test data made through the Gateway; every bound (user, profile) pair, fresh per session."""
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=GATEWAY, verify=tls(), timeout=120) as http:
        dropped = http.delete("/main/testdata", headers=auth)
        assert dropped.status_code in (200, 204), dropped.text
        made = http.post(
            "/main/testdata",
            params={"users": 300, "profiles": 80, "shared_users": 40, "users_per_profile": 3},
            headers=auth,
        )
        assert made.status_code == 201, made.text
        profiles = http.get("/main/profiles", params={"limit": 5000}).json()
    found = [Pair(user, p["id"]) for p in profiles for user in p["users"]]
    assert len(found) >= 100
    return found


@pytest.fixture(scope="session")
def production(cluster: Cluster, kube: Kube) -> Production:
    """overlays/local-production applied in place of the dev overlay (they share the
    namespace), with its Secret and test data: for test_production and test_faults."""
    return deploy(cluster, kube)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if faults.ROWS:
        terminalreporter.section("fault suite: what each fault cost (from the clients' side)")
        terminalreporter.write(faults.table())


@pytest.fixture
def fresh(pairs: list[Pair]) -> Pair:
    """One pair no other test touches."""
    return pairs.pop()
