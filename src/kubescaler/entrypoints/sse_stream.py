"""A granted stream's response: its events handed to the server with as little as can be.

:class:`SseStream` is what the stream route returns. Litestar runs the route's guards (auth,
the rate limits), its parameters and the route itself as for any route, and answers a refusal
as usual; once the stream is granted, the response's body is :func:`pump`: ``hello``, then
each event handed to the server's ``send`` (by :class:`Pump`, at once in the producer's tick
when the client keeps up), without Litestar's streaming machinery (an async iterator per
layer, a task group and a cancel scope per stream) between the session and the socket.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Coroutine, Iterable
from typing import Any, cast

from litestar import Request
from litestar.background_tasks import BackgroundTask, BackgroundTasks
from litestar.datastructures import Cookie
from litestar.enums import MediaType, ScopeType
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp, Receive, Scope, Send

from kubescaler.domain.sse import frame
from kubescaler.services.stream_metrics import TALLY
from kubescaler.services.stream_session import Data, StreamSession

#: The scope key :func:`with_server_send` keeps the server's own ``send`` under.
SERVER_SEND = "kubescaler.server_send"


def with_server_send(app: ASGIApp) -> ASGIApp:
    """``app`` with the server's own ``send`` in each HTTP scope, for a stream's events.

    Litestar's middleware wraps ``send`` per request (the exception handler notes when a
    response starts, Prometheus times it); each wrapper is one more coroutine per message,
    a tenth of a stream process' Python time at 160 clients. They need the response's start
    and end, which still go through them; the events in between need none of it.
    """

    async def exposing(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            scope[SERVER_SEND] = send  # type: ignore[literal-required]
        await app(scope, receive, send)

    return exposing


async def pump(
    session: StreamSession,
    retry_ms: int,
    send: Send,
    receive: Receive,
    server_send: Send | None = None,
) -> None:
    """A granted stream's body: ``hello``, then every event handed to the server (a data event
    written into the stream's frame buffer, and counted as sent), until the stream ends or the
    client goes away. See :class:`Pump`.

    ``hello`` and the end go through ``send``, the app's (its middleware sees the body start
    and end); the events between go to ``server_send`` when there is one (the server's own,
    :func:`with_server_send`), past the per-message wrappers of Litestar's middleware."""
    hello = session.start()
    gone = asyncio.ensure_future(_hang_up_when_gone(session, receive))
    try:
        await send({"type": "http.response.body", "body": frame(hello), "more_body": True})
        await Pump(session, retry_ms, server_send or send).run()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        gone.cancel()
        session.close()


class Pump:
    """Hands one stream's events to the server, at once when it can.

    While the stream's consumer is idle, the hub's producer offers it each data event
    (:meth:`offer`, the session's :class:`~kubescaler.services.stream_session.Outlet`): the server's
    ``send`` is started right there, in the producer's tick, and when it completes without
    waiting (the client keeps up: the usual case) the event is sent with no task woken for it.
    A send that must wait (the connection is paused for a slow client) is finished by
    :meth:`run`, this stream's own task, which then sends what was queued meanwhile, in order.
    The frame buffer holds one event: no event is written into it while a send is unfinished.
    """

    def __init__(self, session: StreamSession, retry_ms: int, send: Send) -> None:
        self.session, self.retry_ms, self.send = session, retry_ms, send
        self.frame = session.frames.frame
        #: offer() steps the server's send coroutine itself; anything else is always awaited.
        self.eager = inspect.iscoroutinefunction(send)
        #: A send started by offer() that had to wait: the coroutine and what it waits on.
        self.pending: tuple[Coroutine[Any, Any, None], Any] | None = None
        self.failed: BaseException | None = None

    def _message(self, item: Data) -> Any:
        view = self.frame(*item)
        TALLY.sent_bytes += len(view)
        TALLY.sent_events += 1
        # A view of the frame buffer, not bytes (ASGI says bytes): uvicorn copies a body into
        # its chunk framing before its send returns, and the view is not written to until then.
        return {"type": "http.response.body", "body": view, "more_body": True}

    def offer(self, item: Data) -> bool:
        if self.pending is not None or self.failed is not None or not self.eager:
            return False
        sending = cast("Coroutine[Any, Any, None]", self.send(self._message(item)))
        try:
            waits_on = sending.send(None)
        except StopIteration:
            return True  # sent, no task woken
        except Exception as exc:  # the send failed: the stream's task raises it
            self.failed = exc
        else:
            self.pending = (sending, waits_on)
        self.session.wake()
        return True

    async def _finish_pending(self) -> None:
        """Drive the send offer() started to its end, as a task would have: wait for what it
        waits on, then resume it, until it returns."""
        assert self.pending is not None
        sending, waits_on = self.pending
        try:
            while True:
                if getattr(waits_on, "_asyncio_future_blocking", None) is None:
                    await asyncio.sleep(0)  # a bare yield: let the loop run once
                else:
                    # taken over from the send, as a task takes what a coroutine yields
                    waits_on._asyncio_future_blocking = False
                    await waits_on
                waits_on = sending.send(None)
        except StopIteration:
            pass
        finally:
            self.pending = None
            sending.close()

    async def run(self) -> None:
        """Until the stream ends: finish a send offer() left waiting, send what is queued,
        and else wait idle (offered each event) until there is more."""
        session, send = self.session, self.send
        queue = session.queue
        session.outlet = self
        try:
            while True:
                if self.failed is not None:
                    raise self.failed
                if self.pending is not None:
                    await self._finish_pending()
                if not queue:
                    await session.wait()
                    continue
                item = queue.popleft()
                if item is None:
                    return
                if isinstance(item, tuple):
                    if session.hub.clock() >= session.deadline_ms:
                        session.expire()  # queued before the deadline, due after it: never sent
                        continue
                    await send(self._message(item))
                else:
                    body = frame(item, self.retry_ms)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
        finally:
            session.outlet = None
            if self.pending is not None:
                self.pending[0].close()
                self.pending = None


async def _hang_up_when_gone(session: StreamSession, receive: Receive) -> None:
    """End ``session`` when the server says its client disconnected (a server may swallow
    what is sent to a closed connection, so sending alone would never notice)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    session.hang_up()


class _SseBody(ASGIResponse):
    _should_set_content_length = False

    def __init__(self, session: StreamSession, retry_ms: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session, self.retry_ms = session, retry_ms
        self.server_send: Send | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.server_send = cast("Send | None", scope.get(SERVER_SEND))
        await super().__call__(scope, receive, send)

    async def send_body(self, send: Send, receive: Receive) -> None:
        await pump(self.session, self.retry_ms, send, receive, self.server_send)


class SseStream(Stream):
    """A granted stream as a ``text/event-stream`` response whose body :func:`pump` sends."""

    def __init__(
        self,
        session: StreamSession,
        retry_ms: int,
        *,
        headers: dict[str, str],
        cookies: list[Cookie],
    ) -> None:
        super().__init__((), media_type="text/event-stream", headers=headers, cookies=cookies)
        self.session, self.retry_ms = session, retry_ms

    def to_asgi_response(
        self,
        app: Any,
        request: Request[Any, Any, Any],
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: MediaType | str | None = None,
        status_code: int | None = None,
        **_: Any,
    ) -> ASGIResponse:
        return _SseBody(
            self.session,
            self.retry_ms,
            background=self.background or background,
            cookies=self.cookies if cookies is None else itertools.chain(self.cookies, cookies),
            encoding=self.encoding,
            headers={**headers, **self.headers} if headers is not None else self.headers,
            is_head_response=is_head_response,
            media_type="text/event-stream",
            status_code=self.status_code or status_code,
        )
