"""The state Redis's topology: in production a primary, two replicas and three Sentinels, one
of each per machine, which the services and KEDA find the primary through; elsewhere one plain
Redis."""

from __future__ import annotations

import re
from typing import Any

import pytest
from rendering import Rendered, render

from kubescaler import settings

NAMESPACE = "kubescaler"


def _script(rendered: Rendered, name: str) -> str:
    """The shell script a StatefulSet's first container runs (``sh -c SCRIPT``: in the args,
    or the command ``sh -c`` and the script the one arg)."""
    container = rendered.get("StatefulSet", name)["spec"]["template"]["spec"]["containers"][0]
    args = [*container.get("command", []), *container["args"]]
    assert args[:2] == ["sh", "-c"], args
    return str(args[2])


def _one_per_machine(workload: dict[str, Any]) -> bool:
    name = workload["metadata"]["name"]
    terms = workload["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    return any(
        t["topologyKey"] == "kubernetes.io/hostname"
        and t["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": name}
        for t in terms["requiredDuringSchedulingIgnoredDuringExecution"]
    )


@pytest.mark.parametrize("overlay", ["production", "local-production"])
def test_production_runs_a_primary_two_replicas_and_three_sentinels_one_per_machine(
    overlay: str,
) -> None:
    prod = render(overlay)
    for name in ("redis", "redis-sentinel"):
        workload = prod.get("StatefulSet", name)
        assert workload["spec"]["replicas"] == 3
        assert _one_per_machine(workload), name
        service = prod.get("Service", name)["spec"]
        assert service["clusterIP"] == "None"  # a DNS name per pod: redis-0.redis, ...
        assert service["publishNotReadyAddresses"] is True  # resolvable while starting
        assert workload["spec"]["serviceName"] == name
    pdbs = {d["metadata"]["name"]: d["spec"] for d in prod.of_kind("PodDisruptionBudget")}
    assert pdbs["redis"]["maxUnavailable"] == pdbs["redis-sentinel"]["maxUnavailable"] == 1


def test_every_server_follows_the_primary_the_sentinels_name_and_refuses_writes_alone() -> None:
    """A server asks the Sentinels whom to follow (redis-0 leads only when none answers),
    waits while they hold it down or fail it over, announces its own pod name, and takes
    writes only while a replica follows it."""
    script = _script(render("production"), "redis")
    assert "sentinel master kubescaler" in script
    assert "*,s_down,*|*,o_down,*|*,failover_in_progress,*" in script
    assert "redis-sentinel-$i.redis-sentinel.$POD_NAMESPACE.svc" in script
    assert 'primary="redis-0.redis.$POD_NAMESPACE.svc"' in script
    assert '--replica-announce-ip "$me"' in script
    assert "--replicaof" in script
    assert "--min-replicas-to-write 1 --min-replicas-max-lag 5" in script
    assert "--appendonly yes" in script


def test_the_sentinels_watch_the_master_the_services_ask_for() -> None:
    """Quorum two of three, down after 5 s, the master name the services and KEDA use, and
    the Sentinels' addresses the pods of their headless Service."""
    prod = render("production")
    conf = settings.load(prod.config())
    script = _script(prod, "redis-sentinel")
    monitor = re.search(r"sentinel monitor (\S+) \$primary 6379 (\d)", script)
    assert monitor is not None
    assert monitor.groups() == (conf.redis.sentinel_master, "2")
    assert f"sentinel down-after-milliseconds {conf.redis.sentinel_master} 5000" in script
    assert "sentinel resolve-hostnames yes" in script
    assert "sentinel announce-hostnames yes" in script
    assert conf.redis.sentinel_addresses == [
        (f"redis-sentinel-{i}.redis-sentinel", 26379) for i in range(3)
    ]
    lock_hosts = {u.split("//")[1].split(".")[0] for u in conf.redis.lock_urls}
    assert lock_hosts == {"redis-lock-0", "redis-lock-1", "redis-lock-2"}  # independent


def test_keda_reads_the_backlog_from_the_primary_the_sentinels_name() -> None:
    prod = render("production")
    conf = settings.load(prod.config())
    (trigger,) = prod.get("ScaledObject", "lock-keeper")["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "redis-sentinel-streams"
    assert "address" not in meta
    assert meta["addresses"].split(",") == [
        f"{host}.{NAMESPACE}.svc:{port}" for host, port in conf.redis.sentinel_addresses
    ]
    assert meta["sentinelMaster"] == conf.redis.sentinel_master
    assert (meta["stream"], meta["consumerGroup"]) == (
        conf.lock.command_stream,
        conf.lock.command_group,
    )


@pytest.mark.parametrize("overlay", ["dev", "local", "classic"])
def test_dev_local_and_classic_keep_one_plain_redis(overlay: str) -> None:
    rendered = render(overlay)
    assert rendered.get("StatefulSet", "redis")["spec"]["replicas"] == 1
    assert settings.load(rendered.config()).redis.sentinels == []
    names = {w["metadata"]["name"] for w in rendered.workloads()}
    assert "redis-sentinel" not in names
