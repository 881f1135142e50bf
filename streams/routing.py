from typing import Any

from django.urls import re_path

from core.exceptions import error_body
from streams import frames
from streams.consumer import GatewayConsumer


async def unknown_path(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Any other WebSocket path: an error frame (not_found) and close 4004,
    never an unrouted request failing with a traceback. (daphne can refuse a
    handshake only with 403, so the socket is accepted to say why.)"""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    body = error_body("not_found", "No WebSocket endpoint here; connect to /api/v1/ws.")
    await send({"type": "websocket.send", "text": frames.encode({"type": "error", "request_id": None, "data": body})})
    await send({"type": "websocket.close", "code": frames.CLOSE_NOT_FOUND})
    while (await receive())["type"] != "websocket.disconnect":
        pass


websocket_urlpatterns = [
    re_path(r"^api/v1/ws/?$", GatewayConsumer.as_asgi()),
    re_path(r"", unknown_path),
]


def register_websocket_route(route: Any) -> None:
    """An app's own WebSocket path (an alias of the gateway), registered in
    its ``AppConfig.ready()``: tried before the catch-all, once."""
    if any(str(r.pattern) == str(route.pattern) for r in websocket_urlpatterns):
        return
    websocket_urlpatterns.insert(len(websocket_urlpatterns) - 1, route)
