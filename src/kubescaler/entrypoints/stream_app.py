"""The stream service: one exclusive Server-Sent-Events stream per (user, profile) pair."""

from __future__ import annotations

import asyncio
import contextlib
import html
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import msgspec
from litestar import Litestar, MediaType, Request, Response, Router, get
from litestar.datastructures import CacheControlHeader, Cookie
from litestar.params import Parameter
from litestar.static_files import create_static_files_router

from kubescaler.adapters import redis_client
from kubescaler.adapters.base_client import BaseClient
from kubescaler.adapters.lockclient import LockClient
from kubescaler.adapters.locklog import LogTail
from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.domain.models import parse_uuid
from kubescaler.domain.stream import session_id
from kubescaler.entrypoints import auth
from kubescaler.entrypoints.auth import SESSION_COOKIE
from kubescaler.entrypoints.serve import serve
from kubescaler.entrypoints.sse_stream import SseStream, with_server_send
from kubescaler.entrypoints.web import create_service_app
from kubescaler.services.podcost import pod_cost_updates
from kubescaler.services.streaming import StreamHub
from kubescaler.settings import Settings

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@get("/stream/{user_id:str}/{profile_id:str}", guards=[auth.stream_open_guard])
async def stream(
    hub: StreamHub,
    request: Request[Any, Any, Any],
    user_id: str,
    profile_id: str,
    session: Annotated[str | None, Parameter(description="the client's session id")] = None,
) -> SseStream:
    """The pair's stream. The owner is ``?session=``, else the session cookie, else a new one.

    400 malformed ids, 403 not bound, 404 unknown, 409 held by another session (with its
    expiry), 503 when base, Redis or the lock-keeper do not answer or this instance drains.
    Before any of that the guard refuses: 401/403 (auth mode: no token, or another user's) and
    429 (too many opens of this session or client address).
    """
    uid, pid = parse_uuid(user_id, "user id"), parse_uuid(profile_id, "profile id")
    owner = session_id(session) or session_id(request.cookies.get(SESSION_COOKIE))
    cookies = []
    if owner is None:
        owner = uuid.uuid4().hex
        cookies.append(Cookie(key=SESSION_COOKIE, value=owner, path="/", samesite="lax"))
    opened = await hub.open(uid, pid, owner)
    return SseStream(opened, hub.retry_ms, headers=SSE_HEADERS, cookies=cookies)


NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kubescaler: web client not built</title></head>
<body><h1>The web client was not built</h1>
<p>This stream service found no <code>{page}</code> in <code>{web_dir}</code>.
Build it with <code>npm ci &amp;&amp; npm run build</code> in <code>frontend/</code>
(<code>./dev up</code> does), or point <code>KUBESCALER_STREAM_WEB_DIR</code> at a build.</p>
<p>The stream itself is served at <code>/stream/{{user_id}}/{{profile_id}}?session=...</code>.</p>
</body></html>
"""


def web_page(web_dir: Path, page: str) -> Response[bytes]:
    """A built page of the web client, or 503 saying how to build it."""
    try:
        body = (web_dir / page).read_bytes()
    except OSError:
        text = NOT_BUILT.format(page=html.escape(page), web_dir=html.escape(str(web_dir)))
        return Response(text.encode(), status_code=503, media_type=MediaType.HTML)
    # a token in the page's ?access_token= must not travel on in Referer headers
    headers = {"Cache-Control": "no-cache", "Referrer-Policy": "no-referrer"}
    return Response(body, media_type=MediaType.HTML, headers=headers)


@get(
    "/index/{user_id:str}/{profile_id:str}",
    guards=[auth.user_guard],
    media_type=MediaType.HTML,
    sync_to_thread=False,
)
def index(settings: Settings, user_id: str, profile_id: str) -> Response[bytes]:
    """The web client for one pair (400 for malformed ids; auth mode: the user's token)."""
    parse_uuid(user_id, "user id")
    parse_uuid(profile_id, "profile id")
    return web_page(settings.stream.web_path, "stream.html")


@get(["/", "/dashboard"], media_type=MediaType.HTML, sync_to_thread=False)
def dashboard(settings: Settings) -> Response[bytes]:
    """Suggested users, their live profiles, and the stream instances seen."""
    return web_page(settings.stream.web_path, "dashboard.html")


class InstanceInfo(msgspec.Struct):
    instance: str
    connections: int
    draining: bool


@get("/instance", sync_to_thread=False, include_in_schema=False)
def instance(hub: StreamHub) -> Response[InstanceInfo]:
    """This instance's name and live connections (the dashboard's per-instance reading)."""
    info = InstanceInfo(hub.instance, len(hub.sessions), hub.draining)
    return Response(info, headers={"Cache-Control": "no-store"})


def web_assets(web_dir: Path) -> Router:
    """The web client's hashed scripts and styles, at /assets/."""
    return create_static_files_router(
        "/assets",
        directories=[web_dir / "assets"],
        cache_control=CacheControlHeader(max_age=31_536_000, public=True),
        include_in_schema=False,
    )


def create_app(settings: Settings) -> Litestar:
    access = auth.stream_access(settings)  # the auth mode and the stream-open rate limits
    base = BaseClient(settings.base, settings.admin_token)
    locks = LockClient(settings, name=settings.instance)
    hub = StreamHub(settings, base, locks)

    @contextlib.asynccontextmanager
    async def clients(_: Litestar) -> AsyncIterator[None]:
        log_redis = redis_client.connect(settings.redis)
        block_ms = max(100, min(1000, int(settings.redis.timeout_s * 500)))
        tail = LogTail(log_redis, settings.lock.log_stream, block_ms=block_ms)
        await locks.start()
        # grants made on any instance end this one's older streams of the same pair
        follower = asyncio.create_task(hub.follow(tail.follow()))
        refresher = asyncio.create_task(hub.keep_refreshed())
        producer = asyncio.create_task(hub.keep_producing())
        try:
            # the pod's deletion cost follows its live connections (off unless configured)
            async with pod_cost_updates(settings.stream, lambda: len(hub.sessions)):
                yield
        finally:
            hub.drain()
            loops = (follower, refresher, producer)
            for task in loops:
                task.cancel()
            # ended before their clients close: a read cancelled mid-reply and its connection
            # closed under it can leave the task pending for good, and the process with it
            await asyncio.wait(loops, timeout=2 * settings.redis.timeout_s)
            await hub.wait_background()
            await locks.stop()
            await base.close()
            await log_redis.aclose()

    async def not_draining() -> None:
        if hub.draining:
            raise DependencyUnavailable("stream", "draining")

    app = create_service_app(
        "stream",
        settings,
        handlers=[
            stream,
            index,
            dashboard,
            instance,
            *auth.ROUTES,
            web_assets(settings.stream.web_path),
        ],
        checks={"base": base.ping, "redis": locks.ping},
        own_checks={"draining": not_draining},
        dependencies={"hub": hub, "settings": settings},
        lifespan=[clients, auth.closing(access)],
    )
    app.state.hub = hub
    app.state.access = access
    return app


def run(settings: Settings) -> int:
    """Serve streams until SIGTERM/SIGINT; the first signal drains before uvicorn shuts down."""
    app = create_app(settings)
    hub: StreamHub = app.state.hub
    return serve(
        with_server_send(app),
        settings,
        settings.stream_port,
        grace_s=settings.stream.grace_s,
        on_signal=hub.drain,
    )
