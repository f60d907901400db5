"""ASGI middleware: work stops for clients that have gone, request body size limit (413 before the body
is read), request metrics, and the last word on an unexpected error (a 500 that keeps the connection)."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import client_gone
from app.metrics import REQUESTS


class BodyTooLarge(Exception):
    pass


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class _Response:
    """Passes a response's messages on and remembers whether it has started."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class BodyLimit:
    """Refuse bodies over ``max_bytes``: by Content-Length at once, or while streaming a chunked body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"request body over the limit of {self.max_bytes} bytes"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await _send_json(send, 413, {"error": "too_large", "detail": detail})
                    return
        received = 0
        response = _Response(send)

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(detail)
            return message

        try:
            await self.app(scope, limited_receive, response.send)
        except BodyTooLarge:
            if not response.started:
                await _send_json(send, 413, {"error": "too_large", "detail": detail})


class CancelOnDisconnect:
    """Cancel a request's work when its client disconnects before the response is complete.

    uvicorn never cancels an application whose client has gone; abandoned requests would each still
    wait for a thread and do all their work, so a burst of clients that give up (short timeouts, closed
    tabs, a fuzzer) left minutes of work for nobody queued in front of every new request. Here a pump
    task owns the server's ``receive``: it passes the request body on (one message at a time, so large
    uploads keep their back-pressure) and then waits for ``http.disconnect``; if that comes before the
    response is complete, the request is cancelled at its next await. Work already running in a thread
    is never interrupted, but it sees the disconnect through ``app.client_gone``: it stops before its
    next transaction begins or while it waits for SQLite's write lock. Dependencies with ``yield``
    still close their sessions, so a transaction either committed before the cancel or rolls back.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        inbox_in, inbox_out = anyio.create_memory_object_stream[Message](1)
        complete = False

        async def pump(cancel: anyio.CancelScope, gone: threading.Event) -> None:
            async with inbox_in:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        if not complete:
                            gone.set()
                            cancel.cancel()
                        return
                    await inbox_in.send(message)

        async def app_receive() -> Message:
            try:
                return await inbox_out.receive()
            except anyio.EndOfStream:
                return {"type": "http.disconnect"}

        async def tracking_send(message: Message) -> None:
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        error: Exception | None = None
        with client_gone.watching() as gone:
            async with anyio.create_task_group() as group:
                group.start_soon(pump, group.cancel_scope, gone)
                try:
                    await self.app(scope, app_receive, tracking_send)
                except Exception as exc:  # re-raised as itself below, not inside an exception group
                    error = exc
                group.cancel_scope.cancel()
        inbox_out.close()
        if error is not None:
            raise error


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except anyio.get_cancelled_exc_class():
            if not started:
                status = 499  # the client closed the request (nginx's code): nothing was answered
            raise
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope.get("method", ""), path, str(status)).observe(time.perf_counter() - start)


class InternalErrors:
    """An unexpected exception becomes a 500 ``{"error": "internal", "detail"}`` with an incident id in the
    log, and goes no further. Starlette's own last resort re-raises after answering, and uvicorn then closes
    the connection, so a client's next request on it (even /health) failed with a reset; here the
    connection stays usable. A response already under way cannot be mended: then the error goes on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response = _Response(send)
        try:
            await self.app(scope, receive, response.send)
        except Exception as exc:
            if response.started:
                raise
            incident = uuid.uuid4().hex[:12]
            logging.getLogger("boxal").error("internal error %s", incident, exc_info=exc)
            detail = f"internal error (incident {incident}); this is a bug, please report it"
            await _send_json(send, 500, {"error": "internal", "detail": detail})
