"""The autoscaling queries, exactly as the manifests hold them, against a real Prometheus.

Debian's prometheus scrapes two running stream instances holding different numbers of real SSE
streams (and the lock-keeper), relabelled with `namespace`/`pod` as Kubernetes discovery does;
the ScaledObject's query and the prometheus-adapter rules, rendered as the adapter renders them,
go through the HTTP API, and the HPA formula on the answers gives the expected replica count.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from rendering import MANIFESTS, render

from kubescaler.domain.sse import SseParser
from kubescaler_dev.proc import free_port
from kubescaler_dev.services import Service

pytestmark = pytest.mark.integration

NAMESPACE = "kubescaler"
#: streams opened on each instance, and the pod name each is relabelled as
STREAMS = {"stream-6d4b9c7f5-a1b2c": 6, "stream-6d4b9c7f5-x9y8z": 2}
LOCK_KEEPER_POD = "lock-keeper-7f9d8b6c4-q5w6e"
PROMETHEUS_INSTALL = "apt-get install -y prometheus (./dev installs it)"


def hpa_desired(
    current: int, metric: float, target: float, lo: int, hi: int, tolerance: float = 0.1
) -> int:
    """The HPA's rule: desired = ceil(current * metric / target), within tolerance and bounds.

    ``metric`` is the per-pod average (Pods metrics, or AverageValue over a total).
    """
    ratio = metric / target
    desired = current if abs(ratio - 1) <= tolerance else math.ceil(current * ratio)
    return max(lo, min(hi, desired))


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found is None:
        pytest.fail(f"prometheus not found: {PROMETHEUS_INSTALL}", pytrace=False)
    return found


@pytest.fixture(scope="module")
def prometheus(
    stream_services: list[Service],
    lock_keeper_service: Service,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A real Prometheus on a free port scraping both stream instances and the lock-keeper."""
    home = tmp_path_factory.mktemp("prometheus")
    targets = [(svc, pod) for svc, pod in zip(stream_services, STREAMS, strict=True)] + [
        (lock_keeper_service, LOCK_KEEPER_POD)
    ]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "kubescaler-pods",
                "scrape_interval": "1s",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{svc.port}"],
                        "labels": {"namespace": NAMESPACE, "pod": pod},
                    }
                    for svc, pod in targets
                ],
            }
        ],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (home / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            prometheus_binary(),
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (home / "prometheus.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def pairs(main_service: Service) -> list[tuple[str, str]]:
    """Fresh (user, profile) pairs, each user bound to its profile."""
    with httpx.Client(base_url=main_service.url, timeout=60) as main:
        main.delete("/testdata")
        r = main.post(
            "/testdata",
            params={"users": 20, "profiles": 12, "users_per_profile": 1, "shared_users": 0},
        )
        assert r.status_code == 201, r.text
        profiles = main.get("/profiles").json()
    return [(p["users"][0], p["id"]) for p in profiles if p["users"]]


@contextlib.asynccontextmanager
async def hold_stream(url: str) -> AsyncIterator[None]:
    """A real SSE client holding one stream open, returning once the stream said hello."""
    hello = asyncio.Event()

    async def pump(response: httpx.Response) -> None:
        parser = SseParser()
        async for chunk in response.aiter_raw():
            if any(m.event == "hello" for m in parser.feed(chunk)):
                hello.set()

    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as client,
        client.stream("GET", url) as response,
    ):
        assert response.status_code == 200, await response.aread()
        task = asyncio.create_task(pump(response))
        try:
            async with asyncio.timeout(15):
                await hello.wait()
            yield
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as client:
        r = await client.get(f"{prometheus}/api/v1/query", params={"query": promql})
    body = r.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


async def wait_for(prometheus: str, promql: str, want: Any, timeout: float = 30) -> list[Any]:
    """Poll until the query's (label -> value) answer equals `want`; return the raw result."""
    deadline = time.monotonic() + timeout
    while True:
        result = await query(prometheus, promql)
        got = {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in result}
        if want(got):
            return result
        if time.monotonic() > deadline:
            async with httpx.AsyncClient(timeout=5) as client:
                targets = (await client.get(f"{prometheus}/api/v1/targets")).json()
            health = [
                (t["scrapeUrl"], t["health"], t["lastError"])
                for t in targets["data"]["activeTargets"]
            ]
            pytest.fail(f"{promql} -> {got}; targets: {health}")
        await asyncio.sleep(0.5)


def render_adapter_query(rule: dict[str, Any], series: str, matchers: str, group_by: str) -> str:
    """Fill a prometheus-adapter metricsQuery template the way the adapter does."""
    return (
        rule["metricsQuery"]
        .replace("<<.Series>>", series)
        .replace("<<.LabelMatchers>>", matchers)
        .replace("<<.GroupBy>>", group_by)
    )


async def test_autoscaling_queries_on_real_prometheus_give_the_expected_replicas(
    prometheus: str, stream_services: list[Service], pairs: list[tuple[str, str]]
) -> None:
    values = yaml.safe_load((MANIFESTS / "base" / "autoscaling-values.yaml").read_text())["data"]
    target = float(values["streamConnectionsPerPod"])
    lo, hi = int(values["streamMinReplicas"]), int(values["streamMaxReplicas"])
    so = render("dev").get("ScaledObject", "stream")["spec"]
    keda_query = so["triggers"][0]["metadata"]["query"]
    assert so["triggers"][0]["metricType"] == "AverageValue"

    rules = yaml.safe_load(
        (MANIFESTS / "components" / "prometheus-adapter" / "adapter-rules.yaml").read_text()
    )
    pods_rule = rules["rules"][0]
    series = pods_rule["name"]["matches"].strip("^$")
    pod_names = "|".join(STREAMS)
    adapter_query = render_adapter_query(
        pods_rule, series, f'namespace="{NAMESPACE}",pod=~"{pod_names}"', "pod"
    )
    external_rule = rules["externalRules"][0]
    backlog_query = render_adapter_query(
        external_rule,
        external_rule["name"]["matches"].strip("^$"),
        f'namespace="{NAMESPACE}"',
        "namespace",
    )

    wanted = list(STREAMS.values())
    assert len(pairs) >= sum(wanted)
    todo = iter(pairs)
    async with contextlib.AsyncExitStack() as stack:
        for svc, count in zip(stream_services, wanted, strict=True):
            for i in range(count):
                user, profile = next(todo)
                url = f"{svc.url}/stream/{user}/{profile}?session=prom-{svc.port}-{i}"
                await stack.enter_async_context(hold_stream(url))

        total = float(sum(wanted))
        # the ScaledObject's query: the deployment's total
        result = await wait_for(prometheus, keda_query, lambda got: list(got.values()) == [total])
        assert len(result) == 1
        current = len(STREAMS)
        keda_desired = hpa_desired(current, total / current, target, lo, hi)

        # the adapter's Pods metric "connections": one value per pod
        per_pod = {pod: float(n) for pod, n in STREAMS.items()}
        result = await wait_for(
            prometheus,
            adapter_query,
            lambda got: {dict(k)["pod"]: v for k, v in got.items()} == per_pod,
        )
        average = sum(float(r["value"][1]) for r in result) / len(result)
        adapter_desired = hpa_desired(current, average, target, lo, hi)

        # 8 connections on 2 pods with 5 per pod: ceil(2 * 4 / 5) = 2 either way
        assert keda_desired == adapter_desired == math.ceil(total / target) == 2

        # the lock-keeper's external metric: one group-wide backlog value
        backlog = await wait_for(prometheus, backlog_query, lambda got: len(got) == 1)
        pending = float(backlog[0]["value"][1])
        assert pending >= 0
        lk_target = float(values["lockKeeperPendingPerPod"])
        assert hpa_desired(1, pending, lk_target, 1, int(values["lockKeeperMaxReplicas"])) == 1

    # streams closed: the same query falls back to 0 connections and one replica
    await wait_for(prometheus, keda_query, lambda got: list(got.values()) == [0.0])
    assert hpa_desired(current, 0.0, target, lo, hi) == lo


def test_hpa_formula() -> None:
    """The formula the test applies, on the seed's numbers."""
    assert hpa_desired(1, 6, 5, 1, 5) == 2
    assert hpa_desired(2, 5.4, 5, 1, 5) == 2  # within the 10% tolerance
    assert hpa_desired(3, 20, 5, 1, 5) == 5  # clamped at the maximum
    assert hpa_desired(4, 0, 5, 1, 5) == 1
