"""The upstream CCXT OMS's WebSocket frames, kept for its clients on the one
gateway (README, "Upstream WebSocket frames"; AsyncAPI ``upstream.*`` messages).

A client frame carries ``action`` (and ``namespace``, ``id``, ``payload``)
instead of ``op``; the handshake's ``x-account-id`` header names the default
account. Each maps onto the gateway's own operation:

| upstream frame | gateway |
|---|---|
| ``{"action": "ping"}`` | ``ping`` (and counts as the answer to the server's heartbeat ping) |
| ``{"action": "subscribe", "payload": {"namespaces": [...], "account_ids": [...]}}`` | ``subscribe`` to ``orders:``/``positions:`` (position) and ``funds:`` (ccxt) of the accounts |
| ``{"namespace": "position", "action": "command", "payload": <command>}`` | ``command`` |
| ``{"namespace": "ccxt", "action": "call", "payload": {"func", "args", "kwargs"}}`` | the CCXT pass-through |

Answers keep the upstream's shape: ``{"id", "ok", "type": "ws_response",
"namespace", "action", "event", "payload"}``; a refusal has ``"event": "error"``
and ``payload`` = ``{"code": ..., "error": <the one error shape>}``.
"""

from __future__ import annotations

from typing import Any

from core.exceptions import error_body

ACCOUNT_HEADER = "x-account-id"
NAMESPACE_CHANNELS = {"position": ("orders", "positions"), "ccxt": ("funds",)}
MAX_SUBSCRIBE_ACCOUNTS = 20


def is_upstream(message: Any) -> bool:
    return isinstance(message, dict) and "op" not in message and isinstance(message.get("action"), str)


def default_account(raw: str | None) -> int | None:
    """The ``x-account-id`` header's account id (None when absent or not a positive integer)."""
    if raw is None or not raw.strip().isdigit() or len(raw.strip()) > 19:
        return None
    value = int(raw.strip())
    return value if 0 < value < 2**63 else None


def response(message: dict[str, Any], *, event: str, payload: Any, ok: bool = True, namespace: str | None = None) -> dict[str, Any]:
    return {
        "id": message.get("id"),
        "ok": ok,
        "type": "ws_response",
        "namespace": namespace if namespace is not None else _text(message.get("namespace")),
        "action": _text(message.get("action")),
        "event": event,
        "payload": payload,
    }


def error(message: dict[str, Any], code: str, text: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    body = error_body(code, text, fields)
    if message.get("id") is not None:
        body["error"]["request_id"] = message.get("id")
    return response(message, event="error", payload={"code": code, **body}, ok=False)


def _text(value: Any) -> str:
    return value[:50] if isinstance(value, str) else ""


def asyncapi_messages() -> dict[str, Any]:
    """The upstream frames for the AsyncAPI document (client and server side)."""
    envelope = {
        "id": {"type": ["string", "integer", "null"], "description": "Echoed in the answer."},
        "namespace": {"type": "string"},
        "action": {"type": "string"},
        "payload": {"type": "object"},
    }

    def client(action: str, namespace: str | None, payload: dict[str, Any], description: str) -> dict[str, Any]:
        properties = {**envelope, "action": {"const": action}, "payload": payload}
        if namespace:
            properties["namespace"] = {"const": namespace}
        return {
            "name": f"upstream {namespace + '.' if namespace else ''}{action}",
            "summary": description,
            "payload": {"type": "object", "required": ["action", *(["namespace"] if namespace else [])], "properties": properties},
        }

    account = {"account_id": {"type": "integer", "description": "Default: the x-account-id header of the handshake."}}
    return {
        "client": {
            "upstream.ping": client("ping", None, {"type": "object"}, "Answered by event pong; also answers the server's heartbeat ping."),
            "upstream.subscribe": client(
                "subscribe",
                None,
                {
                    "type": "object",
                    "properties": {
                        "namespaces": {
                            "type": "array",
                            "items": {"enum": list(NAMESPACE_CHANNELS)},
                            "description": 'Default ["position"].',
                        },
                        "account_ids": {
                            "type": "array",
                            "items": {"type": "integer"},
                            "maxItems": MAX_SUBSCRIBE_ACCOUNTS,
                            "description": "Default: x-account-id.",
                        },
                    },
                },
                "Subscribes the gateway channels: position -> orders:<id> and positions:<id>, ccxt -> funds:<id>; "
                "answered by event subscribed, then the gateway's own subscribed/snapshot/update frames.",
            ),
            "upstream.position.command": client(
                "command",
                "position",
                {
                    "type": "object",
                    "required": ["command"],
                    "properties": {
                        **account,
                        "command": {"type": "string"},
                        "request_id": {"type": "string"},
                        "payload": {"type": "object"},
                    },
                },
                "A command object (as the gateway's command op; trade-scope key); answered by event command_result with the command result.",
            ),
            "upstream.ccxt.call": client(
                "call",
                "ccxt",
                {
                    "type": "object",
                    "required": ["func"],
                    "properties": {**account, "func": {"type": "string"}, "args": {"type": "array"}, "kwargs": {"type": "object"}},
                },
                "A read-only unified ccxt call on a CCXT account (trade-scope key); answered by event ccxt_result with payload {result}.",
            ),
        },
        "server": {
            "upstream.response": {
                "name": "upstream ws_response",
                "summary": "The answer to an upstream frame: event pong, subscribed, command_result, ccxt_result, or error "
                "(payload {code, error: the one error shape}).",
                "payload": {
                    "type": "object",
                    "required": ["type", "ok", "event"],
                    "properties": {
                        "id": {"type": ["string", "integer", "null"]},
                        "ok": {"type": "boolean"},
                        "type": {"const": "ws_response"},
                        "namespace": {"type": "string"},
                        "action": {"type": "string"},
                        "event": {"enum": ["pong", "subscribed", "command_result", "ccxt_result", "error"]},
                        "payload": {"type": "object"},
                    },
                },
            }
        },
    }
