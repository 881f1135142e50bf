"""The AsyncAPI document of ``/api/v1/ws``: the gateway's frames plus every
registered channel family's own entries."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from streams.frames import CLOSE_CODES
from streams.registry import channel_handlers, command_message_schema
from streams.upstream import asyncapi_messages

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object"},
                "request_id": {"type": ["string", "null"]},
            },
        }
    },
}

CLIENT_OPS: dict[str, dict[str, Any]] = {
    "auth": {"api_key": {"type": "string"}},
    "subscribe": {"channel": {"type": "string"}},
    "unsubscribe": {"channel": {"type": "string"}},
    "bars.subscribe": {"symbol": {"type": "string"}, "resolution": {"type": "string"}},
    "bars.unsubscribe": {"symbol": {"type": "string"}, "resolution": {"type": "string"}},
    "ping": {"data": {}},
    "pong": {"data": {"description": "The data of the server's ping, echoed."}},
}

# Other WebSocket paths apps serve (aliases of the gateway), by path: AsyncAPI channel entries.
_endpoints: dict[str, dict[str, Any]] = {}


def register_endpoint_doc(path: str, entry: dict[str, Any]) -> None:
    """Document another WebSocket path (registered in an app's ``ready()``)."""
    _endpoints[path] = entry


SERVER_TYPES = ["hello", "subscribed", "unsubscribed", "snapshot", "update", "ack", "error", "ping", "pong"]


def document() -> dict[str, Any]:
    client_messages = {
        f"op.{op}": {
            "name": op,
            "payload": {
                "type": "object",
                "required": ["op"],
                "properties": {"op": {"const": op}, "request_id": {"type": "string"}, **fields},
            },
        }
        for op, fields in CLIENT_OPS.items()
    }
    command = command_message_schema()  # the OMS's command specs, when it is installed
    if command is not None:
        client_messages["op.command"] = {"name": "command", "payload": command}
    server_messages = {
        f"type.{kind}": {
            "name": kind,
            "payload": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"const": kind},
                    "channel": {"type": "string"},
                    "seq": {"type": "integer"},
                    "request_id": {"type": ["string", "null"]},
                    "data": _ERROR if kind == "error" else {},
                },
            },
        }
        for kind in SERVER_TYPES
    }
    upstream = asyncapi_messages()  # the upstream CCXT OMS's frames (streams.upstream)
    client_messages.update(upstream["client"])
    server_messages.update(upstream["server"])
    channels: dict[str, Any] = {
        "/api/v1/ws": {
            "description": (
                "The one WebSocket endpoint. Authenticate with the X-API-Key header, a session cookie "
                "(browser, allowed Origin), or an auth frame. Subscribe to channels below. Each channel "
                "has its own seq: account channels are gap-free (first update = snapshot.seq + 1), "
                "market channels deliver the latest value. Answer each server ping with a pong echoing "
                "its data. Close codes: 4001 unauthenticated, 4003 foreign origin (handshake refused, HTTP 403), "
                "4008 pong timeout; each close after the handshake follows an error frame saying why. "
                'The upstream CCXT OMS\'s frames ({"action": ...} instead of {"op": ...}, upstream.* messages) '
                "are served too, with the handshake's x-account-id header as their default account."
            ),
            "publish": {"message": {"oneOf": [{"$ref": f"#/components/messages/{name}"} for name in client_messages]}},
            "subscribe": {"message": {"oneOf": [{"$ref": f"#/components/messages/{name}"} for name in server_messages]}},
        }
    }
    channels.update(_endpoints)
    schemas: dict[str, Any] = {}
    for handler in channel_handlers().values():
        channels.update(handler.asyncapi_channels())
        schemas.update(handler.asyncapi_schemas())
    return {
        "asyncapi": "2.6.0",
        "info": {
            "title": "Trading Terminal streams",
            "version": settings.VERSION,
            "description": f"Heartbeat every {settings.WS_HEARTBEAT_INTERVAL}s; answer within {settings.WS_PONG_TIMEOUT}s.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {"messages": {**client_messages, **server_messages}, "schemas": schemas},
        "x-close-codes": [{"code": code, "reason": reason} for code, reason in CLOSE_CODES.items()],
    }


def _resolve(doc: dict[str, Any], node: Any) -> Any:
    """Inline ``#/components/...`` references (the page shows each schema whole)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = doc
            for part in ref[2:].split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            return _resolve(doc, target)
        return {key: _resolve(doc, value) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(doc, item) for item in node]
    return node


def _messages(doc: dict[str, Any], operation: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not operation:
        return []
    message = operation.get("message", {})
    items = message.get("oneOf", [message]) if isinstance(message, dict) else []
    return [_resolve(doc, item) for item in items]


def _pretty(schema: Any) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False)


def page_context() -> dict[str, Any]:
    """The AsyncAPI document arranged for the HTML page (``/api/v1/ws/asyncapi``):
    the endpoint, client ops, server frames, channels with their message
    schemas, and close codes."""
    doc = document()
    endpoint_name = "/api/v1/ws"
    endpoint = doc["channels"][endpoint_name]
    ops = [{"name": m["name"], "payload": _pretty(m["payload"])} for m in _messages(doc, endpoint.get("publish"))]
    frames = [{"name": m["name"], "payload": _pretty(m["payload"])} for m in _messages(doc, endpoint.get("subscribe"))]
    channels = [
        {
            "name": name,
            "description": entry.get("description", ""),
            "parameters": [
                {"name": p, "type": spec.get("schema", {}).get("type", ""), "description": spec.get("description", "")}
                for p, spec in entry.get("parameters", {}).items()
            ],
            "messages": [
                {"name": m.get("name", ""), "summary": m.get("summary", ""), "payload": _pretty(m.get("payload", {}))}
                for m in _messages(doc, entry.get("subscribe"))
            ],
        }
        for name, entry in doc["channels"].items()
        if name != endpoint_name
    ]
    return {
        "info": doc["info"],
        "asyncapi_version": doc["asyncapi"],
        "endpoint": {"name": endpoint_name, "description": endpoint.get("description", "")},
        "ops": ops,
        "frames": frames,
        "channels": channels,
        "close_codes": doc.get("x-close-codes", []),
    }
