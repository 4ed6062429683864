"""The async HTTP client main and stream use to reach base.

A connection base refuses is tried again by httpx's transport (``retries`` more times, with a
short exponential back-off): nothing was sent, so that is safe for writes too; a request that
was sent is never repeated. A base that does not answer is DependencyUnavailable("base"); an
error base answers is passed on with its status and message, so a Cassandra outage behind base
reaches the caller as a 503 naming both.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, TypeVar

import httpx
import msgspec

from kubescaler.adapters.coalesce import Coalescer
from kubescaler.domain.errors import DependencyUnavailable, KubescalerError
from kubescaler.domain.models import (
    MAX_BINDINGS,
    Binding,
    Bindings,
    BindingsQuery,
    Bulk,
    BulkIds,
    Counts,
    Pair,
    Profile,
    ProfilePage,
    UserPage,
)
from kubescaler.settings import BaseClientSettings

T = TypeVar("T")
_encode = msgspec.json.Encoder().encode
#: Most ``POST /bindings`` in flight at once. Fewer in flight, bigger batches: 200 opens
#: arriving through nginx made 10-45 requests with 4 (each one a Cassandra query
#: and a few ms of httpx), 5-21 with 2; 2 rather than 1 so one slow answer does not hold
#: every other open back.
FLUSHES = 2
#: Most requests to base inside httpx at once; more wait their turn in front of it. httpcore's
#: pool (1.0) checks every connection and every queued request whenever a request starts or
#: ends, so with ~50 in flight main spent a third of its CPU there and its /login throughput
#: fell as load rose; a short queue in front keeps that bookkeeping small.
IN_FLIGHT = 16


class UpstreamError(KubescalerError):
    """An error answer from base, passed on with base's status and message."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.status = status


class BaseClient:
    def __init__(
        self,
        settings: BaseClientSettings,
        admin_token: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``transport``: httpx's own (with connect retries) unless a test passes another."""
        self.settings = settings
        headers = {"authorization": f"Bearer {admin_token}"} if admin_token else {}
        limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
        self._turns = asyncio.Semaphore(IN_FLIGHT)
        self._bindings = Coalescer(self._ask, FLUSHES, MAX_BINDINGS)
        self._http = httpx.AsyncClient(
            base_url=settings.url,
            timeout=httpx.Timeout(settings.timeout_s),
            headers=headers,
            transport=transport
            or httpx.AsyncHTTPTransport(retries=settings.retries, limits=limits),
        )

    async def close(self) -> None:
        await self._bindings.aclose()
        await self._http.aclose()

    async def _request(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        wait = timeout or self.settings.timeout_s
        try:
            async with asyncio.timeout(wait):
                await self._turns.acquire()
        except TimeoutError as exc:
            raise DependencyUnavailable(
                "base", f"{method} {path} waited {wait:g} s behind {IN_FLIGHT} requests to base"
            ) from exc
        try:
            response = await self._http.request(
                method, path, timeout=timeout or httpx.USE_CLIENT_DEFAULT, **kwargs
            )
        except (httpx.TransportError, OSError) as exc:
            raise DependencyUnavailable(
                "base", f"{type(exc).__name__} calling {method} {path}: {exc}"
            ) from exc
        finally:
            self._turns.release()
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    async def _get(self, path: str, into: type[T], **params: Any) -> T:
        response = await self._request("GET", path, params=params)
        return msgspec.json.decode(response.content, type=into)

    async def ping(self) -> None:
        await self._request("GET", "/healthz", timeout=1.0)

    async def users(self, limit: int, page: str | None) -> UserPage:
        return await self._get("/users", UserPage, limit=limit, **_page(page))

    async def profiles(self, limit: int, page: str | None) -> ProfilePage:
        return await self._get("/profiles", ProfilePage, limit=limit, **_page(page))

    async def profiles_of_user(self, user_id: uuid.UUID) -> list[Profile]:
        return await self._get(f"/users/{user_id}/profiles", list[Profile])

    async def binding(self, user_id: uuid.UUID, profile_id: uuid.UUID) -> Binding:
        """Whether the user is bound to the profile; 404 (UpstreamError) when either is unknown.

        Lookups asked in the same moment travel together: one ``POST /bindings`` (at most
        MAX_BINDINGS pairs) answers them all, so a burst of stream opens costs base a few
        requests and Cassandra a few ``IN`` queries instead of one each. Up to FLUSHES
        requests are in flight at once, so lookups arriving during one need not wait for it.
        """
        got = await self._bindings(Pair(user_id=user_id, profile_id=profile_id))
        if got.missing is not None:
            ident = got.profile_id if got.missing == "profile" else got.user_id
            raise UpstreamError(404, f"{got.missing} {ident} not found")
        return got

    async def _ask(self, pairs: list[Pair]) -> list[Binding]:
        """One ``POST /bindings`` for the pairs asked together."""
        response = await self._request(
            "POST",
            "/bindings",
            content=_encode(BindingsQuery(pairs=pairs)),
            headers={"content-type": "application/json"},
        )
        try:
            items = msgspec.json.decode(response.content, type=Bindings).items
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DependencyUnavailable(
                "base", f"unreadable answer to POST /bindings: {exc}"
            ) from exc
        if len(items) != len(pairs):
            raise DependencyUnavailable(
                "base", f"POST /bindings answered {len(items)} of {len(pairs)} pairs"
            )
        return items

    async def bulk_insert(self, bulk: Bulk, timeout: float) -> Counts:
        response = await self._request(
            "POST",
            "/bulk",
            timeout=timeout,
            content=msgspec.json.encode(bulk),
            headers={"content-type": "application/json"},
        )
        return msgspec.json.decode(response.content, type=Counts)

    async def bulk_delete(self, ids: BulkIds, timeout: float) -> None:
        await self._request(
            "POST",
            "/bulk/delete",
            timeout=timeout,
            content=msgspec.json.encode(ids),
            headers={"content-type": "application/json"},
        )

    async def drop_all(self, timeout: float) -> None:
        await self._request("DELETE", "/data", timeout=timeout)


def _page(page: str | None) -> dict[str, str]:
    return {"page": page} if page else {}


def _error_from(response: httpx.Response) -> KubescalerError:
    try:
        body = response.json()
        message = str(body.get("error") or body.get("detail") or body)
    except ValueError:
        body, message = {}, response.text[:200]
    if response.status_code >= 500:
        dependency = body.get("dependency") if isinstance(body, dict) else None
        detail = f"base answered {response.status_code}: {message}"
        error = DependencyUnavailable("base", detail)
        if dependency:
            error.extra["cause"] = dependency
        return error
    return UpstreamError(response.status_code, message)
