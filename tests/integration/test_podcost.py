"""Pod-deletion-cost from a real `kubescaler stream` process, against a fake API server.

No cluster here: a tiny HTTPS server on 127.0.0.1 stands in for the API server's pod endpoint
and records every PATCH. The stream process finds it the in-cluster way
(KUBERNETES_SERVICE_HOST/PORT, a service-account folder with token, ca.crt and namespace).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from streamclient import Pair, next_event, open_stream

from kubescaler_dev.proc import free_port
from kubescaler_dev.services import Service, start_service

pytestmark = pytest.mark.integration

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
POD, NAMESPACE, TOKEN = "stream-podcost-0", "kubescaler-test", "fake-sa-token"


@dataclass
class FakeApiServer:
    """What the fake API server received: (path, headers, body) of every PATCH."""

    port: int
    patches: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)

    def costs(self) -> list[str]:
        return [body["metadata"]["annotations"][ANNOTATION] for _, _, body in self.patches]

    async def wait_for_cost(self, cost: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.costs() and self.costs()[-1] == cost:
                return
            await asyncio.sleep(0.1)
        pytest.fail(f"the API server never got cost {cost}; it got {self.costs()}")


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "ca.crt", folder / "server.key"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext"
    subprocess.run(
        [*command.split(), "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def service_account(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service-account folder as the kubelet mounts it: token, ca.crt, namespace."""
    folder = tmp_path_factory.mktemp("serviceaccount")
    (folder / "token").write_text(TOKEN)
    (folder / "namespace").write_text(NAMESPACE)
    return folder


@pytest.fixture(scope="module")
def fake_api(service_account: Path) -> Iterator[FakeApiServer]:
    """HTTPS on 127.0.0.1 with a certificate the service account's ca.crt trusts."""
    cert, key = _self_signed(service_account)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    fake = FakeApiServer(server.server_address[1])

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fake.patches.append((self.path, dict(self.headers), body))
            out = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *_: object) -> None:
            pass

    server.RequestHandlerClass = Handler
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def costed_stream(
    stream_env: dict[str, str],
    lock_keeper_service: Service,
    redis_passwords: dict[str, str],
    fake_api: FakeApiServer,
    service_account: Path,
    test_state: Path,
) -> Iterator[Service]:
    """A stream process with the feature on, finding the fake API in-cluster style."""
    env = {
        **stream_env,
        "KUBESCALER_STREAM_POD_DELETION_COST": "true",
        "KUBESCALER_STREAM_POD_NAME": POD,
        "KUBESCALER_STREAM_POD_COST_INTERVAL_S": "0.2",
        "KUBESCALER_STREAM_KUBE_SA_DIR": str(service_account),
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(fake_api.port),
    }
    svc = start_service(
        "stream",
        {**env, "KUBESCALER_INSTANCE": "stream-podcost"},
        test_state / "logs",
        name="stream-podcost",
        passwords=redis_passwords,
    )
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def unreachable_api_stream(
    stream_env: dict[str, str],
    lock_keeper_service: Service,
    redis_passwords: dict[str, str],
    service_account: Path,
    test_state: Path,
) -> Iterator[Service]:
    """The feature on, but nothing listens where the API server should be."""
    env = {
        **stream_env,
        "KUBESCALER_STREAM_POD_DELETION_COST": "true",
        "KUBESCALER_STREAM_POD_NAME": POD,
        "KUBESCALER_STREAM_POD_COST_INTERVAL_S": "0.2",
        "KUBESCALER_STREAM_POD_COST_TIMEOUT_S": "1",
        "KUBESCALER_STREAM_KUBE_SA_DIR": str(service_account),
        "KUBESCALER_STREAM_KUBE_API_URL": f"https://127.0.0.1:{free_port()}",
    }
    svc = start_service(
        "stream",
        {**env, "KUBESCALER_INSTANCE": "stream-podcost-noapi"},
        test_state / "logs",
        name="stream-podcost-noapi",
        passwords=redis_passwords,
    )
    yield svc
    svc.stop()


async def test_cost_follows_live_streams(
    costed_stream: Service, fake_api: FakeApiServer, pairs: list[Pair]
) -> None:
    """Two open streams: the pod is patched to "2" with the SA token; closed: back to "0"."""
    await fake_api.wait_for_cost("0")  # the idle pod says so at start
    first, second = pairs.pop(), pairs.pop()
    async with (
        open_stream(costed_stream.url + first.path("podcost-session-1")) as (r1, q1),
        open_stream(costed_stream.url + second.path("podcost-session-2")) as (r2, q2),
    ):
        assert (r1.status_code, r2.status_code) == (200, 200)
        await next_event(q1, "data")
        await next_event(q2, "data")
        await fake_api.wait_for_cost("2")
    await fake_api.wait_for_cost("0")
    path, headers, _ = fake_api.patches[-1]
    assert path == f"/api/v1/namespaces/{NAMESPACE}/pods/{POD}"
    assert headers["Content-Type"] == "application/merge-patch+json"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    costs = fake_api.costs()
    assert all(a != b for a, b in itertools.pairwise(costs)), "only changes are sent"
    assert "2" in costs


async def test_unreachable_api_server_does_not_touch_streaming(
    unreachable_api_stream: Service, pairs: list[Pair]
) -> None:
    """Streams open and flow while every update fails; the failures are counted."""
    pair = pairs.pop()
    async with open_stream(unreachable_api_stream.url + pair.path("podcost-noapi-1")) as (r, q):
        assert r.status_code == 200
        await next_event(q, "hello")
        for _ in range(5):
            await next_event(q, "data")
        async with httpx.AsyncClient(base_url=unreachable_api_stream.url) as http:
            assert (await http.get("/readyz")).status_code == 200
            metrics = (await http.get("/metrics")).text
    failures = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("kubescaler_stream_pod_cost_failures_total ")
    ]
    assert failures
    assert failures[0] > 0
    assert "kubescaler_stream_pod_cost_updates_total 0.0" in metrics
