"""The fan-out benchmark's floor: a bare Channels consumer that joins the same
group as the gateway's ``quotes:<symbol>`` subscribers and forwards the same
pre-encoded frames. No auth, no subscription logic, no sequencing."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import re_path  # noqa: E402

from streams.publish import group_for  # noqa: E402

GROUP = group_for("quotes:BENCH:FANOUT")


class FloorConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.send(text_data='{"type":"ready"}')

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def dispatch(self, message: dict) -> None:
        # The same shortcut the gateway takes: fan-out events skip channels'
        # per-message close_old_connections (a hop through the sync thread),
        # so the floor is the fastest forwarder Channels allows.
        if message["type"] == "stream.update":
            await self.send(text_data=message["frame"])
            return
        await super().dispatch(message)


application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter([re_path(r"^floor$", FloorConsumer.as_asgi())]),
    }
)
