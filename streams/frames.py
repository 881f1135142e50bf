"""WebSocket frame types shared by senders and the gateway consumer."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

import orjson

from core.renderers import dumps

ServerFrameType = Literal["hello", "subscribed", "unsubscribed", "snapshot", "update", "ack", "error", "ping", "pong"]

# Close codes of the gateway.
CLOSE_UNAUTHENTICATED = 4001
CLOSE_FORBIDDEN_ORIGIN = 4003
CLOSE_NOT_FOUND = 4004
CLOSE_PONG_TIMEOUT = 4008
CLOSE_CODES = {
    CLOSE_UNAUTHENTICATED: "unauthenticated: no valid API key, session or auth frame in time, or its key revoked or expired or its user deactivated",
    CLOSE_FORBIDDEN_ORIGIN: "foreign origin: the handshake is refused (HTTP 403)",
    CLOSE_NOT_FOUND: "not found: no WebSocket endpoint at this path (the one endpoint is /api/v1/ws)",
    CLOSE_PONG_TIMEOUT: "pong timeout: the server's ping was not echoed in time",
}


class ServerFrame(TypedDict):
    type: ServerFrameType
    channel: NotRequired[str]
    seq: NotRequired[int]
    request_id: NotRequired[str | None]
    data: NotRequired[Any]


class StreamEvent(TypedDict):
    """A channel-layer message carrying one pre-encoded ``update`` frame."""

    type: Literal["stream.update"]
    channel: str
    seq: int
    latest: bool
    frame: str


class StreamEvents(TypedDict):
    """A channel-layer message carrying several updates of one channel, in
    order (one publish for a batch)."""

    type: Literal["stream.updates"]
    channel: str
    events: list[StreamEvent]


def encode(frame: ServerFrame | dict[str, Any]) -> str:
    return dumps(frame).decode()


def decode(text: str) -> Any:
    return orjson.loads(text)
