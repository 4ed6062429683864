"""The floor: a bare ASGI app that streams what a stream client gets, and nothing else.

Every GET but ``/healthz`` is an SSE stream of one constant frame, the size of the stream
service's data event (a real one: ``domain.sse.frame`` of a ``DataEvent`` with a payload of
``KUBESCALER_STREAM_EVENT_BYTES``), sent ``KUBESCALER_STREAM_EVENTS_PER_S`` times a second per
client on that client's own timer. No lock, no queue, no metrics, no framework: what any server
must spend to send those bytes on that schedule. ``bench_stream`` runs it beside the real
stream process and divides.

It is served the way every kubescaler process is, by ``entrypoints.serve.serve`` with the
same settings (the server stack of ``KUBESCALER_SERVER_*``), or, for the comparison of
servers, by granian (``--server granian``, the ``app`` below as its target).

    uv run python bench/floor_app.py --port 8099 [--server uvicorn|granian]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from kubescaler import settings as config
from kubescaler.domain.sse import DataEvent, frame
from kubescaler.domain.stream import Payload

Scope = dict[str, Any]
SSE_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
    ],
}
OK = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}


def data_frame(event_bytes: int) -> bytes:
    """A real data event of the stream service, as SSE bytes (its size is what counts)."""
    event = DataEvent(
        seq=123_456,
        instance="127.0.0.1:8090",
        ts_ms=int(time.time() * 1000),
        token=1234,
        dropped=0,
        payload=Payload(event_bytes).take(),
    )
    return frame(event)


def make_app(event_bytes: int, events_per_s: float) -> Any:
    body = {"type": "http.response.body", "body": data_frame(event_bytes), "more_body": True}
    interval = 1.0 / events_per_s

    async def stream(receive: Any, send: Any) -> None:
        await receive()  # the request (a GET: no body)
        gone = asyncio.ensure_future(receive())  # http.disconnect, when the client goes
        await send(SSE_START)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while not gone.done():
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                await send(body)
        finally:
            gone.cancel()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] == "http" and scope["path"] == "/healthz":
            await send(OK)
            await send({"type": "http.response.body", "body": b"ok"})
        elif scope["type"] == "http":
            await stream(receive, send)

    return app


def app_from_env() -> Any:
    """The app for the settings in the environment (granian's factory target)."""
    stream = config.load().stream
    return make_app(stream.event_bytes, stream.events_per_s)


def stream_app_from_env() -> Any:
    """kubescaler's stream app for the settings in the environment (granian's factory target:
    the real stream process under another server, for the comparison of servers)."""
    from kubescaler.entrypoints.sse_stream import with_server_send
    from kubescaler.entrypoints.stream_app import create_app

    app = with_server_send(create_app(config.load()))

    async def bytes_bodies(scope: Scope, receive: Any, send: Any) -> None:
        """The stream hands uvicorn views of its frame buffer; granian is given bytes."""

        async def send_bytes(message: dict[str, Any]) -> None:
            if type(message.get("body")) is memoryview:
                message = {**message, "body": bytes(message["body"])}
            await send(message)

        await app(scope, receive, send_bytes)

    return bytes_bodies


def base_app_from_env() -> Any:
    """kubescaler's base app for the settings in the environment (granian's factory target)."""
    from kubescaler.entrypoints.base_app import create_app

    return create_app(config.load())


def main_app_from_env() -> Any:
    """kubescaler's main app for the settings in the environment (granian's factory target)."""
    from kubescaler.entrypoints.main_app import create_app

    return create_app(config.load())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    opts = p.parse_args()
    settings = config.load()
    if opts.server == "uvicorn":
        from kubescaler.entrypoints.serve import serve

        serve(app_from_env(), settings, opts.port)
        return
    argv = granian_argv("floor_app:app_from_env", settings.server.loop, opts.port)
    os.execv(argv[0], [*argv[:-1], "--working-dir", str(Path(__file__).parent), argv[-1]])


def granian_argv(target: str, loop: str, port: int) -> list[str]:
    """granian serving the ASGI factory ``target`` on one worker, on 127.0.0.1:``port``."""
    return [
        str(Path(sys.executable).parent / "granian"),
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        loop,
        "--no-ws",
        "--no-access-log",
        "--log-level",
        "warning",
        "--factory",
        target,
    ]


if __name__ == "__main__":
    main()
