"""The upstream Kite backend's order WebSocket paths, as thin aliases of the
gateway's ``orders:``/``positions:`` channels:

- ``WS /api/v1/ws/orders/{account_id}``: one of the caller's accounts;
- ``WS /api/v1/ws/orders``: every account of the caller, those it has when
  it connects and those it gets later (the connection joins its user's
  ``brokers.announce`` group; creating an account tells it which to add).

Authenticated as the gateway (``X-API-Key`` header, a session cookie from an
allowed Origin, or an ``{"op": "auth"}`` frame); another user's account (or
none) answers an error frame ``not_found`` and closes with the gateway's
4004, as an account that does not exist. Once authenticated the connection
is subscribed by itself and speaks the upstream's frames: each channel update
becomes ``{"type": "order_update", "account_id": .., "data": <order>}`` or
``{"type": "position_update", ...}``, and the text ``ping`` is answered
``pong``. The channels' snapshots (the open orders and positions) arrive
first as the gateway's ``snapshot`` frames. A gap in an account channel is
healed the gateway's way (a fresh snapshot). The server sends no JSON pings
here (the upstream's clients do not answer them); a dead peer is found by the
WebSocket's own pings (daphne's) and a slow reader by the send queue's bound.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.db import database_sync_to_async
from django.urls import re_path

from accounts.models import User
from brokers.announce import owner_group
from brokers.models import BrokerAccount
from core.exceptions import DomainError
from streams import frames
from streams.consumer import MAX_SUBSCRIPTIONS, GatewayConsumer
from streams.frames import CLOSE_NOT_FOUND

logger = logging.getLogger(__name__)

ENDPOINT = "orders"
ACCOUNT_COUNT_PREFIX = "ws-orders-account:"  # open alias connections per account (GET /ws/status)
CHANNEL_PREFIXES = ("orders", "positions")
UPDATE_TYPES = {"orders": "order_update", "positions": "position_update"}
MAX_ACCOUNTS = MAX_SUBSCRIPTIONS // len(CHANNEL_PREFIXES)
ALLOWED_OPS = ("auth", "ping", "pong")


def _owned_account_ids(user: User, account_id: int | None) -> list[int]:
    accounts = BrokerAccount.objects.filter(owner=user)
    if account_id is not None:
        accounts = accounts.filter(pk=account_id)
    return list(accounts.order_by("pk").values_list("pk", flat=True)[: MAX_ACCOUNTS + 1])


class UpstreamOrdersConsumer(GatewayConsumer):
    endpoint = ENDPOINT

    async def connect(self) -> None:
        self.alias_accounts: list[int] = []
        await super().connect()

    async def _heartbeat(self) -> None:
        return  # see the module's docstring: no JSON pings on the upstream's paths

    async def _send_hello(self, request_id: Any, method: str) -> None:
        await super()._send_hello(request_id, method)
        await self._subscribe_accounts()

    async def _subscribe_accounts(self) -> None:
        assert self.user is not None
        raw = (self.scope.get("url_route") or {}).get("kwargs", {}).get("account_id")
        account_id = int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
        if raw is None:
            # Joined before the accounts are listed: one created in between is
            # listed, announced, or both (``account_added`` skips a known one).
            group = owner_group(self.user.pk)
            try:
                await self.channel_layer.group_add(group, self.channel_name)
            except Exception:  # the accounts present still stream
                logger.warning("could not join %s", group, exc_info=True)
            self.groups_joined.add(group)  # re-joined with the others after a layer outage
        if raw is not None and account_id is None:
            ids: list[int] = []
        else:
            ids = await database_sync_to_async(_owned_account_ids)(self.user, account_id)
        if raw is not None and not ids:
            await self.send_error(None, "not_found", "No such account.")
            await self._close(CLOSE_NOT_FOUND)
            return
        if len(ids) > MAX_ACCOUNTS:
            await self.send_error(
                None, "too_many_subscriptions", f"At most {MAX_ACCOUNTS} accounts per connection; connect per account instead."
            )
            await self._close(CLOSE_NOT_FOUND)
            return
        for pk in ids:
            try:
                await self._subscribe_account(pk)
            except DomainError as exc:  # the account went away meanwhile
                await self.send_error(None, exc.code, exc.message, exc.fields)
                await self._close(CLOSE_NOT_FOUND)
                return

    async def _subscribe_account(self, pk: int) -> None:
        if pk in self.alias_accounts:
            return
        for prefix in CHANNEL_PREFIXES:
            await self.subscribe(f"{prefix}:{pk}", None)
        self.alias_accounts.append(pk)
        await self._count(ACCOUNT_COUNT_PREFIX + str(pk), +1)

    async def account_added(self, event: dict[str, Any]) -> None:
        """An account became the user's (``brokers.announce``): stream it too,
        its snapshots first, once its owner is checked again."""
        pk = event.get("account_id")
        if self.closed or self.user is None or not isinstance(pk, int) or pk in self.alias_accounts:
            return
        if not await database_sync_to_async(_owned_account_ids)(self.user, pk):
            return
        if len(self.alias_accounts) >= MAX_ACCOUNTS:
            await self.send_error(
                None, "too_many_subscriptions", f"At most {MAX_ACCOUNTS} accounts per connection; account {pk} is not streamed here."
            )
            return
        try:
            await self._subscribe_account(pk)
        except DomainError:
            return  # gone again meanwhile

    async def disconnect(self, code: int) -> None:
        accounts, self.alias_accounts = getattr(self, "alias_accounts", []), []
        for pk in accounts:
            await self._count(ACCOUNT_COUNT_PREFIX + str(pk), -1)
        await super().disconnect(code)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None and text_data.strip().lower() == "ping":
            self._enqueue("pong")
            return
        if text_data is not None and len(text_data) <= 4096:
            try:
                message = frames.decode(text_data)
            except ValueError:
                message = None
            # Only the text ping and the auth, ping and pong ops here (no
            # subscriptions, commands or the CCXT upstream's action frames).
            if isinstance(message, dict) and message.get("op") not in ALLOWED_OPS:
                request_id = message.get("request_id")
                await self.send_error(request_id, "unknown_op", "This path takes 'ping', and an auth frame; subscribe on /api/v1/ws.")
                return
        await super().receive(text_data=text_data, bytes_data=bytes_data)

    def _enqueue(self, item: Any) -> None:
        if isinstance(item, str) and item.startswith('{"type":"update"'):
            item = self._as_upstream(item)
        elif isinstance(item, str) and item.startswith('{"type":"subscribed"'):
            return  # subscribed by the server itself: nothing to tell
        super()._enqueue(item)

    @staticmethod
    def _as_upstream(text: str) -> str:
        frame = frames.decode(text)
        prefix, _, account = str(frame.get("channel", "")).partition(":")
        kind = UPDATE_TYPES.get(prefix)
        if kind is None:
            return text
        return frames.encode({"type": kind, "account_id": int(account), "seq": frame.get("seq"), "data": frame.get("data")})


routes = [
    re_path(r"^api/v1/ws/orders/?$", UpstreamOrdersConsumer.as_asgi()),
    re_path(r"^api/v1/ws/orders/(?P<account_id>[^/]+)/?$", UpstreamOrdersConsumer.as_asgi()),
]


def upstream_ws_status(user: User) -> dict[str, Any]:
    """Open WebSocket connections (every process): per endpoint, and on the
    orders paths per account of ``user`` (never another user's)."""
    from streams.consumer import CONNECTIONS_PREFIX
    from streams.subscribers import subscriber_totals

    totals = subscriber_totals()
    by_endpoint = {
        "gateway": totals.get(CONNECTIONS_PREFIX + GatewayConsumer.endpoint, 0),
        "orders": totals.get(CONNECTIONS_PREFIX + ENDPOINT, 0),
    }
    accounts = [
        {"account_id": pk, "connections": totals.get(ACCOUNT_COUNT_PREFIX + str(pk), 0)}
        for pk in BrokerAccount.objects.filter(owner=user).order_by("pk").values_list("pk", flat=True)
    ]
    return {"connections": sum(by_endpoint.values()), "endpoints": by_endpoint, "accounts": accounts}


def asyncapi_entries() -> dict[str, Any]:
    """The AsyncAPI channel entries of the two paths (payloads: the channels')."""
    from oms.streams import OrdersChannel, PositionsChannel

    def update(kind: str, channel: Any) -> dict[str, Any]:
        return {
            "name": kind,
            "summary": channel.update_description,
            "payload": {
                "type": "object",
                "required": ["type", "account_id", "data"],
                "properties": {
                    "type": {"const": kind},
                    "account_id": {"type": "integer"},
                    "seq": {"type": "integer", "description": "The channel's sequence (gap-free per account and kind)."},
                    "data": channel.payload_schema(),
                },
            },
        }

    messages = [
        update("order_update", OrdersChannel()),
        update("position_update", PositionsChannel()),
        {"name": "snapshot", "summary": "First, per account: the gateway's snapshot frame of orders:<id> and positions:<id>."},
        {"name": "pong", "summary": "The text 'pong', answering the text 'ping'.", "payload": {"const": "pong"}},
        {"name": "error", "summary": "The gateway's error frame (then a close: 4001 unauthenticated, 4004 not your account)."},
    ]
    description = (
        "The upstream Kite backend's order stream, an alias of the gateway's orders:/positions: channels. Authenticate as on "
        "/api/v1/ws (X-API-Key header, session cookie from an allowed Origin, or an auth frame); the connection is then "
        "subscribed by itself. Send the text 'ping' to get 'pong'. No JSON pings are sent on this path."
    )
    return {
        "/api/v1/ws/orders/{account_id}": {
            "description": description + " Another user's account answers an error frame (not_found) and close 4004.",
            "parameters": {"account_id": {"schema": {"type": "integer"}, "description": "One of your broker accounts."}},
            "subscribe": {"message": {"oneOf": messages}},
            "publish": {"message": {"oneOf": [{"name": "ping", "payload": {"const": "ping"}}]}},
        },
        "/api/v1/ws/orders": {
            "description": description + f" Streams every account you have when connecting (at most {MAX_ACCOUNTS}).",
            "subscribe": {"message": {"oneOf": messages}},
            "publish": {"message": {"oneOf": [{"name": "ping", "payload": {"const": "ping"}}]}},
        },
    }
