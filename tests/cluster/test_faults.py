"""The fault suite: production on three nodes, one fault at a time under contention (several
sessions fighting for each of a few pairs, users logging in), judged from what the clients
received: never two sessions streaming one pair at overlapping times, never a token granted
twice or going back, every probe (a fresh open, a login, a page) answering again within a
bound that is measured, failures a clear 503, and the lock event log's verifier clean. The
table of what each fault cost is printed at the end of the run."""

from __future__ import annotations

import asyncio
import time

import pytest
from faults import Suite
from kubehelp import Kube, ready_pods, redis_password, replay_verify
from production import Production, node_of

from kubescaler.adapters.redlock import READY_KEY
from kubescaler_dev.cluster.app import NAMESPACE
from kubescaler_dev.cluster.stack import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.faults, pytest.mark.timeout(600)]

#: how long a node stays frozen: past a lock's 60 s life, so that a stream on it would, when
#: it wakes, send on a lapsed lock if streams did not check their deadline
FREEZE_S = 70.0
#: how long a node stays lost before it is brought back
LOST_S = 60.0
#: a wiped master votes again a lock's lifetime (60 s) after it was found empty
CATCH_UP_LIMIT_S = 120.0


@pytest.fixture(scope="module")
def suite(production: Production, kube: Kube) -> Suite:
    return Suite(production, kube)


def kill(kube: Kube, pod: str) -> None:
    """A stateless pod killed: deleted at once (its Deployment makes another elsewhere)."""
    kube.run("-n", NAMESPACE, "delete", "pod", pod, "--grace-period=0", "--force", "--wait=false")


def crash(kube: Kube, cluster: Cluster, pod: str) -> None:
    """A store's process killed (SIGKILL from its node: a crash, as the OOM killer does): the
    kubelet starts it again in its pod, on its volume. Not a forced delete, which would let a
    new pod of the StatefulSet open the same volume while the old process still writes it."""
    found = kube.ns("get", "pod", pod)
    index = node_index(found["spec"]["nodeName"])
    container = found["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    killed = cluster.crash(index, found["metadata"]["uid"], container)
    assert killed, f"no process of {pod} found to kill"


def node_index(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def victim_node(kube: Kube) -> int:
    """The node a node fault hits: one with a stream pod, not the state Redis' node (one
    Redis with its disk on one node: losing that node stops every lock until it is back)."""
    redis_node = node_of(kube, "redis-0")
    for pod in ready_pods(kube, "stream"):
        if pod["spec"]["nodeName"] != redis_node:
            return node_index(pod["spec"]["nodeName"])
    nodes = {f"kubescaler-{i}" for i in (1, 2, 3)} - {redis_node}
    return node_index(sorted(nodes)[0])


def by_app(kube: Kube, app: str) -> str:
    return str(ready_pods(kube, app)[0]["metadata"]["name"])


async def test_a_stream_pod_killed(suite: Suite, kube: Kube) -> None:
    async def inject() -> None:
        kill(kube, suite.stream_pod_with_clients())

    await suite.run("stream pod killed", inject)
    replay_verify(kube)


async def test_a_lock_keeper_pod_killed(suite: Suite, kube: Kube) -> None:
    async def inject() -> None:
        kill(kube, by_app(kube, "lock-keeper"))

    await suite.run("lock-keeper pod killed", inject)
    replay_verify(kube)


async def test_the_state_redis_pod_killed(suite: Suite, kube: Kube, cluster: Cluster) -> None:
    async def inject() -> None:
        crash(kube, cluster, "redis-0")

    await suite.run("state Redis pod killed", inject)
    replay_verify(kube)


async def test_a_redlock_master_killed(suite: Suite, kube: Kube, cluster: Cluster) -> None:
    async def inject() -> None:
        crash(kube, cluster, "redis-lock-1")

    await suite.run("Redlock master killed", inject)
    replay_verify(kube)


async def test_a_redlock_master_wiped(suite: Suite, kube: Kube, cluster: Cluster) -> None:
    """Its data deleted (every key, as the lock-keeper's Redis user may: the deletes reach its
    AOF) and the pod restarted: it comes back empty."""
    keeper = [
        "env", f"REDISCLI_AUTH={redis_password(kube, 'lock-keeper')}",
        "redis-cli", "--user", "lock-keeper",
    ]  # fmt: skip
    wipe = " ".join(keeper) + " --scan | xargs -r " + " ".join(keeper) + " del"

    async def inject() -> None:
        kube.run("-n", NAMESPACE, "exec", "redis-lock-2", "--", "sh", "-c", wipe)
        crash(kube, cluster, "redis-lock-2")

    await suite.run("Redlock master wiped", inject)
    replay_verify(kube)
    # It abstains until a lock's lifetime has passed and it has caught up from the others: the
    # next fault needs it voting (two masters out of three lost is no quorum, by design).
    started = time.monotonic()
    while time.monotonic() - started < CATCH_UP_LIMIT_S:
        ready = kube.run(
            "-n", NAMESPACE, "exec", "redis-lock-2", "--", *keeper, "EXISTS", READY_KEY,
            check=False,
        )  # fmt: skip
        if ready.stdout.strip() == "1":
            print(f"the wiped master votes again {time.monotonic() - started:.0f} s after the run")
            return
        await asyncio.sleep(2)
    raise AssertionError(f"the wiped master did not catch up within {CATCH_UP_LIMIT_S:.0f} s")


async def test_a_cassandra_pod_killed(suite: Suite, kube: Kube, cluster: Cluster) -> None:
    async def inject() -> None:
        crash(kube, cluster, "cassandra-1")

    await suite.run("Cassandra pod killed", inject)
    replay_verify(kube)


async def test_a_node_lost_and_brought_back(suite: Suite, kube: Kube, cluster: Cluster) -> None:
    node = victim_node(kube)

    async def inject() -> None:
        await asyncio.to_thread(cluster.lose, node)

    async def heal() -> None:
        await asyncio.to_thread(cluster.back, node)

    await suite.run(f"node lost ({LOST_S:.0f} s) and back", inject, heal, hold_s=LOST_S)
    kube.run("wait", "--for=condition=Ready", f"node/kubescaler-{node}", "--timeout=120s")
    replay_verify(kube)


async def test_a_node_frozen_and_resumed(suite: Suite, kube: Kube, cluster: Cluster) -> None:
    node = victim_node(kube)

    async def inject() -> None:
        await asyncio.to_thread(cluster.freeze, node)

    async def heal() -> None:
        await asyncio.to_thread(cluster.resume, node)

    await suite.run(f"node frozen ({FREEZE_S:.0f} s) and resumed", inject, heal, hold_s=FREEZE_S)
    replay_verify(kube)


async def test_a_node_drained(suite: Suite, kube: Kube) -> None:
    """`kubectl drain` honours the PodDisruptionBudgets: one pod of each at a time."""
    node = f"kubescaler-{victim_node(kube)}"

    async def inject() -> None:
        await asyncio.to_thread(
            kube.run, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data",
            "--timeout=240s", timeout=300,
        )  # fmt: skip

    async def heal() -> None:
        await asyncio.to_thread(kube.run, "uncordon", node)

    await suite.run("node drained", inject, heal)
    replay_verify(kube)
