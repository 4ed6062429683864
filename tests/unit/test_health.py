"""/readyz gates start-up on every dependency, then keeps a pod in rotation through a
dependency's outage (its answers say 503 naming it), but never through its own conditions."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.entrypoints.web import health_handlers


async def test_readiness_gates_start_up_then_reports_a_lost_dependency_as_degraded() -> None:
    up = {"store": False, "draining": False}

    async def store() -> None:
        if not up["store"]:
            raise DependencyUnavailable("store", "refused")

    async def not_draining() -> None:
        if up["draining"]:
            raise DependencyUnavailable("self", "draining")

    app = Litestar(health_handlers({"store": store}, {"draining": not_draining}))
    async with AsyncTestClient(app) as http:
        first = await http.get("/readyz")
        assert first.status_code == 503  # never reached: start-up waits for it
        assert first.json()["status"] == "not ready"
        assert first.json()["failing"] == ["store"]

        up["store"] = True
        assert (await http.get("/readyz")).json() == {
            "status": "ready",
            "checks": {"store": "ok", "draining": "ok"},
            "failing": [],
        }

        up["store"] = False  # lost after start: listed, but the pod stays in rotation
        lost = await http.get("/readyz")
        assert lost.status_code == 200
        assert lost.json()["status"] == "degraded"
        assert lost.json()["failing"] == ["store"]
        assert "refused" in lost.json()["checks"]["store"]

        up["draining"] = True  # the process' own condition takes it out at any time
        draining = await http.get("/readyz")
        assert draining.status_code == 503
        assert draining.json()["failing"] == ["store", "draining"]
