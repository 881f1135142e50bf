"""The per-process limit on HTTP requests in flight (README, "Back-pressure").

Each request's sync code runs in its own thread holding its own database
connection (a pooled one in production), so a burst of requests would exhaust
the pool, the threads or the database's connections and answer 500s. An ASGI
middleware counts the HTTP requests in flight in this process: one over
``WEB_LIMIT_CONCURRENCY`` waits up to ``WEB_LIMIT_WAIT`` seconds for a slot,
then answers 503 ``server_busy`` in the error shape with ``Retry-After``,
before Django (and any side effect) sees it. WebSocket connections are not
counted: they are long-lived and hold no connection between frames (uvicorn's
``--limit-concurrency`` bounds connections of both kinds as a backstop).
The liveness probe is never held back.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from core.exceptions import ServerBusy, error_body

ASGIApp = Any
EXEMPT_PATHS = frozenset({"/api/v1/health/live", "/api/v1/health/live/"})


class ConcurrencyLimit:
    def __init__(self, app: ASGIApp, *, limit: int, wait: float, retry_after: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.wait = wait
        self.retry_after = retry_after
        self.in_flight = 0
        # Created in the serving event loop, at the first request.
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.limit <= 0 or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        try:
            async with asyncio.timeout(self.wait):
                # A cancelled acquire gives its slot back (asyncio.Semaphore).
                await self._slots.acquire()
        except TimeoutError:
            await self._busy(send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self._slots.release()

    async def _busy(self, send: Any) -> None:
        exc = ServerBusy(retry_after=self.retry_after)
        body = json.dumps(error_body(exc.code, exc.message)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(self.retry_after).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})
