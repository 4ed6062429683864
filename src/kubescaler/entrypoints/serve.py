"""The one way kubescaler's HTTP processes run: uvicorn with the house options.

Every process (base, main, stream, the lock-keeper's health endpoint) serves through
:func:`serve`: its app on ``settings.host``, on the event loop and HTTP parser of
``settings.server`` (uvloop and httptools unless told otherwise; docs/BENCHMARKS.md says
why), no access log (Prometheus counts requests), the lifespan on, and a bounded graceful
shutdown, and the start-up heap frozen out of the garbage collector's full passes.
``on_signal`` runs in the event loop on the first SIGTERM/SIGINT, before uvicorn
stops accepting (the stream service drains there).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Any

from kubescaler import logs
from kubescaler.settings import Settings

GRACE_S = 30


def serve(
    app: Any,
    settings: Settings,
    port: int,
    *,
    grace_s: float = GRACE_S,
    on_signal: Callable[[], None] | None = None,
) -> int:
    """Serve the ASGI ``app`` on ``port`` until SIGTERM/SIGINT; 0 once it stopped."""
    import uvicorn

    if not logging.getLogger().handlers:  # started without the CLI, which configures them
        logs.configure(
            settings.log_level,
            settings.log_format,
            service="kubescaler",
            instance=settings.instance,
        )

    class Server(uvicorn.Server):
        loop: asyncio.AbstractEventLoop | None = None
        signalled = False

        async def startup(self, sockets: Any = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().startup(sockets)
            # What exists once the app is up (modules, the app, its clients) lives as long as
            # the process: out of the collector's sight, a full collection scans only what
            # came since, not a few hundred thousand objects (tens of ms with the loop stopped).
            gc.freeze()

        def handle_exit(self, sig: int, frame: Any) -> None:
            if on_signal is not None and self.loop is not None and not self.signalled:
                self.signalled = True
                self.loop.call_soon_threadsafe(on_signal)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's loggers go to the process's handler (logs.py)
        access_log=False,
        lifespan="on",
        loop=settings.server.loop,
        http=settings.server.http,
        timeout_graceful_shutdown=int(grace_s),
    )
    Server(config).run()
    return 0
