"""ASGI entry point: HTTP and the WebSocket gateway, plus the in-process loops
on the embedded default."""

import asyncio
import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from core import loops  # noqa: E402
from core.asgi_limits import ConcurrencyLimit  # noqa: E402
from core.static_files import StaticFilesASGI  # noqa: E402
from streams.routing import websocket_urlpatterns  # noqa: E402


class StartLoops:
    """Starts the registered loops inside this process's event loop.

    daphne has no lifespan events, so the loops start when the reactor runs
    (and, as a fallback for other servers, on the first connection)."""

    def __init__(self, app):  # type: ignore[no-untyped-def]
        self.app = app
        self.started = False
        if "twisted.internet.reactor" in sys.modules:
            from twisted.internet import reactor

            reactor.callWhenRunning(self.start)  # type: ignore[attr-defined]

    def start(self) -> None:
        if self.started:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # Twisted runs callWhenRunning callbacks just before the asyncio
            # loop spins, where the loops cannot be created: retry from inside it.
            from twisted.internet import reactor

            reactor.callLater(0, self.start)  # type: ignore[attr-defined]
            return
        self.started = True
        loops.start_in_process()
        if "twisted.internet.reactor" in sys.modules:
            from twisted.internet import reactor

            # Stop the loops while the reactor still runs, so iterations in
            # flight finish their publishes; stop_all's wait is bounded.
            reactor.addSystemEventTrigger("before", "shutdown", self.stop)  # type: ignore[attr-defined]

    @staticmethod
    def stop():  # type: ignore[no-untyped-def]
        from twisted.internet import defer

        return defer.Deferred.fromFuture(asyncio.ensure_future(loops.stop_all()))

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if not self.started and scope["type"] != "lifespan":
            self.start()
        return await self.app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        # Requests in flight per process: over the limit, 503 server_busy (README, "Back-pressure").
        # Static files: WhiteNoise (compressed, cached; README "The dashboard").
        "http": ConcurrencyLimit(StaticFilesASGI(django_asgi_app), limit=settings.WEB_LIMIT_CONCURRENCY, wait=settings.WEB_LIMIT_WAIT),
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
if settings.RUN_LOOPS_IN_PROCESS:
    application = StartLoops(application)
