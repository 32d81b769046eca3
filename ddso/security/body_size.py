"""A pure ASGI middleware that answers 413 to request bodies over a byte limit.

A declared ``Content-Length`` over the limit is refused before the application runs and
before a byte of the body is read. A body without one (``Transfer-Encoding: chunked``) is
counted as the application receives it; the message that crosses the limit raises inside the
application's ``receive``, and whatever the application makes of that (FastAPI turns it into
a 400, other code into a 500) is replaced by the 413. Only an application that already
started its response before reading its whole body cannot be given a 413; it is cut off
instead.

The answer is JSON naming the limit, ``{"detail": ..., "max_bytes": N}``, with
``Connection: close`` because the rest of the body is left unread.

FastAPI's own ``FastAPI(max_body_size=...)`` also limits bodies, but answers in plain text
without the limit and only once the handler reads the body; this one is framework-free.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(Exception):
    """Raised inside the application's ``receive`` when the body crosses the limit."""


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None  # servers refuse these; if one gets here, counting still applies
            return length if length >= 0 else None
    return None


class BodySizeLimit:
    """Answer 413 to HTTP requests whose body is larger than ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must not be negative, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes
        self._response = json.dumps(
            {
                "detail": f"request body is larger than the limit of {max_bytes} bytes",
                "max_bytes": max_bytes,
            }
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._reject(send)
            return

        received = 0
        exceeded = started = rejected = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge(self.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, rejected
            if exceeded and not started:
                # The application's answer to BodyTooLarge (a 400 or 500): send ours instead.
                if not rejected:
                    rejected = True
                    await self._reject(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started and not rejected:
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self._response)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._response})
