"""What every Litestar service shares: error mapping, health, metrics, the admin guard."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib.metadata import version
from typing import Any

from litestar import Litestar, MediaType, Request, Response, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ControllerRouterHandler, LifespanHook

from kubescaler.domain.errors import KubescalerError, TooManyRequests, Unauthorized
from kubescaler.entrypoints.request_checks import JsonRequest, check_request
from kubescaler.settings import Settings

log = logging.getLogger(__name__)

#: A readiness check: raises (anything) when its dependency is not usable.
Check = Callable[[], Awaitable[object]]


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"status": status, "error": message, **extra}


def _domain_error(_: Request[Any, Any, Any], exc: KubescalerError) -> Response[Any]:
    if exc.status >= 500:
        log.warning("%s", exc.message)
    headers = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="kubescaler"'
    elif isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after_s)
    return Response(
        error_body(exc.status, exc.message, **exc.extra), status_code=exc.status, headers=headers
    )


def _validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    details = exc.extra if isinstance(exc.extra, list) else []
    parts = [_detail(d) for d in details]
    message = "; ".join(parts) or exc.detail
    return Response(
        error_body(400, f"invalid request: {message}", path=request.url.path), status_code=400
    )


def _detail(detail: object) -> str:
    """One validation failure, naming the parameter or body field it is about."""
    if not isinstance(detail, dict):
        return str(detail)
    message = str(detail.get("message", detail))
    key, source = detail.get("key"), getattr(detail.get("source"), "value", detail.get("source"))
    if not key or key == "data":  # "data" is the whole body, not a field of it
        return message
    if source == "body":
        return f"body field {key!r}: {message}"
    return f"{source} parameter {key!r}: {message}"


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return Response(
        error_body(exc.status_code, exc.detail), status_code=exc.status_code, headers=exc.headers
    )


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return Response(
        error_body(500, f"internal error: {type(exc).__name__}"),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


EXCEPTION_HANDLERS: Mapping[Any, Any] = {
    KubescalerError: _domain_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    HTTP_500_INTERNAL_SERVER_ERROR: _unexpected,
}


def health_handlers(
    checks: Mapping[str, Check], own: Mapping[str, Check] | None = None, timeout: float = 2.0
) -> list[Any]:
    """``/healthz`` (the process answers) and ``/readyz``.

    Readiness gates start-up: 503 until every dependency in ``checks`` has answered once. After
    that a dependency that fails is listed (status ``degraded``) but the pod stays ready: its
    requests answer a 503 naming that dependency, where a pod taken out of its Service would
    leave the entry point's anonymous 503 instead, and would come back only a probe period
    after the dependency did. ``own`` are the process' own conditions (draining): any of them
    failing is 503 at any time.
    """
    own = dict(own or {})
    reached: set[str] = set()

    @get("/healthz", media_type=MediaType.JSON, include_in_schema=False, sync_to_thread=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", media_type=MediaType.JSON, include_in_schema=False)
    async def readyz() -> Response[dict[str, Any]]:
        async def run(check: Check) -> str:
            try:
                await asyncio.wait_for(check(), timeout)
            except Exception as exc:  # any failure of a dependency is "not ready", with why
                return f"failing: {type(exc).__name__}: {exc}"[:300]
            return "ok"

        every = {**checks, **own}
        names = list(every)
        results = await asyncio.gather(*(run(every[n]) for n in names))
        status = dict(zip(names, results, strict=True))
        failing = [n for n, r in status.items() if r != "ok"]
        reached.update(n for n in checks if status[n] == "ok")
        blocking = [n for n in failing if n in own or n not in reached]
        word = "not ready" if blocking else "degraded" if failing else "ready"
        return Response(
            {"status": word, "checks": status, "failing": failing},
            status_code=503 if blocking else 200,
        )

    return [healthz, readyz]


def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """base's mutating endpoints require the admin token when one is configured. (base is
    internal; the public services' guards, auth mode included, are in ``auth.py``.)"""
    token = connection.app.state.settings.admin_token
    if token and connection.headers.get("authorization", "") != f"Bearer {token}":
        raise NotAuthorizedException(
            "this endpoint needs the admin token: Authorization: Bearer <KUBESCALER_ADMIN_TOKEN>"
        )


class MetricsController(PrometheusController):
    """``/metrics`` in Prometheus' text format; kept out of the OpenAPI, like the probes."""

    include_in_schema = False


def _constant(value: Any) -> Provide:
    def provide() -> Any:
        return value

    return Provide(provide, sync_to_thread=False)


def create_service_app(
    name: str,
    settings: Settings,
    *,
    handlers: Sequence[ControllerRouterHandler],
    checks: Mapping[str, Check],
    own_checks: Mapping[str, Check] | None = None,
    dependencies: Mapping[str, Any] | None = None,
    lifespan: Sequence[Any] = (),
    on_startup: Sequence[LifespanHook] = (),
) -> Litestar:
    """A Litestar app with the house conventions: errors, health, metrics, body limit, and the
    request checks (JSON bodies only, integers that are integers, bounded nesting)."""
    prometheus = PrometheusConfig(
        app_name=name,
        prefix="kubescaler_http",
        group_path=True,
        exclude=["/metrics", "/healthz", "/readyz"],
    )
    return Litestar(
        route_handlers=[*handlers, *health_handlers(checks, own_checks), MetricsController],
        exception_handlers=dict(EXCEPTION_HANDLERS),
        middleware=[prometheus.middleware],
        lifespan=list(lifespan),
        on_startup=list(on_startup),
        request_max_body_size=settings.max_body_bytes,
        request_class=JsonRequest,
        before_request=check_request,
        openapi_config=OpenAPIConfig(title=f"kubescaler {name}", version=version("kubescaler")),
        dependencies={key: _constant(value) for key, value in (dependencies or {}).items()},
        state=State({"settings": settings}),
        debug=False,
        # the process's logging is logs.configure's (text or JSON): Litestar's default config
        # would replace its handler with its own format (unhandled errors: _unexpected logs them)
        logging_config=None,
    )
