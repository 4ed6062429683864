"""Pod-deletion-cost: the patch body, the change detection, the client's request, the wiring."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec
import pytest
from prometheus_client import REGISTRY

from kubescaler import settings
from kubescaler.adapters.podcost import (
    ANNOTATION,
    PodCostClient,
    PodCostConfigError,
    cost_patch,
)
from kubescaler.services.podcost import PodCostReporter, pod_cost_updates

FAILURES = "kubescaler_stream_pod_cost_failures_total"


def _failures() -> float:
    return REGISTRY.get_sample_value(FAILURES) or 0.0


class FakeWriter:
    def __init__(self) -> None:
        self.calls: list[int] = []
        self.fail = False

    async def set_cost(self, cost: int) -> None:
        self.calls.append(cost)
        if self.fail:
            raise httpx.ConnectError("no API server")


def _sa_dir(tmp_path: Path, namespace: str = "kubescaler") -> Path:
    (tmp_path / "token").write_text("secret-token\n")
    (tmp_path / "namespace").write_text(namespace)
    return tmp_path


def _stream(**overrides: object) -> settings.StreamSettings:
    return msgspec.structs.replace(settings.StreamSettings(), **overrides)


def test_patch_body_sets_only_the_annotation_as_a_string() -> None:
    """A merge patch of metadata.annotations; the value is the count as a decimal string."""
    assert msgspec.json.decode(cost_patch(2)) == {"metadata": {"annotations": {ANNOTATION: "2"}}}
    assert ANNOTATION == "controller.kubernetes.io/pod-deletion-cost"
    assert msgspec.json.decode(cost_patch(2**40))["metadata"]["annotations"][ANNOTATION] == str(
        2**31 - 1
    )


async def test_reporter_writes_only_changes() -> None:
    """The first tick writes the count; an unchanged count is not written again."""
    count = 0
    writer = FakeWriter()
    reporter = PodCostReporter(writer, lambda: count, interval_s=10)
    await reporter.tick()
    await reporter.tick()
    count = 2
    await reporter.tick()
    await reporter.tick()
    count = 0
    await reporter.tick()
    assert writer.calls == [0, 2, 0]
    assert reporter.written == 0


async def test_reporter_counts_failures_and_retries_until_one_lands() -> None:
    """A failed PATCH never raises; it is counted and the same value is tried again next tick."""
    writer = FakeWriter()
    writer.fail = True
    reporter = PodCostReporter(writer, lambda: 3, interval_s=10)
    before = _failures()
    await reporter.tick()
    await reporter.tick()
    assert _failures() == before + 2
    assert reporter.written is None
    writer.fail = False
    await reporter.tick()
    await reporter.tick()
    assert writer.calls == [3, 3, 3]
    assert reporter.written == 3
    assert not reporter.failing


async def test_client_sends_an_authenticated_merge_patch_of_its_own_pod(tmp_path: Path) -> None:
    """PATCH /api/v1/namespaces/{ns}/pods/{name}, merge-patch content type, bearer token."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    cfg = _stream(
        pod_name="stream-abc", kube_api_url="https://k8s.test", kube_sa_dir=str(_sa_dir(tmp_path))
    )
    client = PodCostClient(cfg)
    await client.http.aclose()
    client.http = httpx.AsyncClient(
        base_url=cfg.kube_api_url, transport=httpx.MockTransport(handler)
    )
    await client.set_cost(5)
    (tmp_path / "token").write_text("rotated")  # the kubelet rotates projected tokens
    await client.set_cost(4)
    await client.close()
    first, second = seen
    assert first.method == "PATCH"
    assert first.url == "https://k8s.test/api/v1/namespaces/kubescaler/pods/stream-abc"
    assert first.headers["content-type"] == "application/merge-patch+json"
    assert first.headers["authorization"] == "Bearer secret-token"
    assert first.content == cost_patch(5)
    assert second.headers["authorization"] == "Bearer rotated"


async def test_client_raises_on_a_refusal(tmp_path: Path) -> None:
    """403 (no RBAC) is an error for the reporter to count, not a silent success."""
    cfg = _stream(pod_name="p", kube_api_url="https://k8s.test", kube_sa_dir=str(_sa_dir(tmp_path)))
    client = PodCostClient(cfg)
    client.http = httpx.AsyncClient(
        base_url=cfg.kube_api_url, transport=httpx.MockTransport(lambda _: httpx.Response(403))
    )
    with pytest.raises(httpx.HTTPStatusError):
        await client.set_cost(1)
    await client.close()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pod_name": ""}, "POD_NAME"),
        ({"kube_api_url": ""}, "KUBERNETES_SERVICE_HOST"),
        ({"kube_sa_dir": "/nonexistent"}, "no namespace"),
    ],
)
def test_client_refuses_an_incomplete_configuration(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    base = {"pod_name": "p", "kube_api_url": "https://k8s.test", "kube_sa_dir": str(tmp_path)}
    _sa_dir(tmp_path)
    with pytest.raises(PodCostConfigError, match=message):
        PodCostClient(_stream(**(base | overrides)))


async def test_nothing_runs_when_off_and_misconfiguration_is_counted_not_raised() -> None:
    async with pod_cost_updates(_stream(), lambda: 0) as reporter:
        assert reporter is None
    before = _failures()
    async with pod_cost_updates(_stream(pod_deletion_cost=True), lambda: 0) as reporter:
        assert reporter is None  # no pod name, no API server: the stream service runs on
    assert _failures() == before + 1


def test_in_cluster_api_address_comes_from_the_service_env() -> None:
    """KUBERNETES_SERVICE_HOST/PORT give the API URL; an explicit setting wins."""
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert settings.load(env).stream.kube_api_url == "https://10.96.0.1:443"
    v6 = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    assert settings.load(v6).stream.kube_api_url == "https://[fd00::1]:6443"
    own = {**env, "KUBESCALER_STREAM_KUBE_API_URL": "http://127.0.0.1:1"}
    assert settings.load(own).stream.kube_api_url == "http://127.0.0.1:1"
    assert settings.load({}).stream.kube_api_url == ""
    assert not settings.load({}).stream.pod_deletion_cost
