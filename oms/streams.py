"""Account channels (``orders:<id>``, ``positions:<id>``, ``funds:<id>``) and
the WebSocket ``command`` op.

Account channels are gap-free: ``oms.services.tx`` takes each channel's
sequence on the account row in the transaction that changes state and
publishes after commit. A snapshot reads that sequence and the state it
reflects together (see ``_snapshot``), so the first update a subscriber gets
is ``snapshot.seq + 1``.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.db import transaction
from rest_framework import serializers

from accounts.models import ApiKey, User
from brokers.models import BrokerAccount
from oms.api.serializers import FundsSerializer, OrderSerializer, PositionSerializer
from oms.errors import InvalidInput, NotFound
from oms.models import OPEN_STATUSES, Order, Position, PositionStatus, Source
from oms.payloads import order_payload, position_payload
from oms.services.commands import commands_from_wire
from oms.services.funds import funds_payload
from oms.specs.schema import json_schema
from streams.registry import ChannelHandler


class AccountChannel(ChannelHandler):
    """``<prefix>:<account_id>`` of one of the user's accounts."""

    latest_value = False  # gap-free: every update, in order, never coalesced
    seq_field = ""
    snapshot_description = ""
    update_description = ""
    # The wire form's serializer (the REST schema's): its JSON Schema is the payload's.
    payload_serializer: type[serializers.Serializer]
    nullable = False

    def account_id(self, channel: str) -> int:
        rest = channel.partition(":")[2]
        if not rest.isascii() or not rest.isdigit() or len(rest) > 18:
            raise InvalidInput(
                f"Account channels are {self.prefix}:<account_id>.", code="unknown_channel", fields={"channel": ["Malformed."]}
            )
        return int(rest)

    def canonical(self, channel: str) -> str:
        try:
            return f"{self.prefix}:{self.account_id(channel)}"  # orders:007 is orders:7
        except InvalidInput:
            return channel

    async def authorize(self, *, user: User, channel: str) -> None:
        account_id = self.account_id(channel)
        if not await database_sync_to_async(_owns)(user, account_id):
            raise NotFound("No such account.", fields={"channel": ["Unknown account."]})

    async def snapshot(self, *, user: User, channel: str) -> tuple[int, Any]:
        return await database_sync_to_async(self.read_snapshot)(user, self.account_id(channel))

    def read_snapshot(self, user: User, account_id: int) -> tuple[int, Any]:
        with transaction.atomic():
            # The row lock waits for a writer that holds it (its seq and state
            # commit together) and keeps the next one out until we have read:
            # under READ COMMITTED two plain reads could straddle a commit.
            account = BrokerAccount.objects.select_for_update().filter(pk=account_id, owner=user).first()
            if account is None:
                raise NotFound("No such account.")
            return getattr(account, self.seq_field), self.state(account)

    def state(self, account: BrokerAccount) -> Any:
        raise NotImplementedError

    def asyncapi_channels(self) -> dict[str, Any]:
        return {
            f"{self.prefix}:{{account_id}}": {
                "description": f"{self.description} Gap-free: the first update after the snapshot has seq = snapshot.seq + 1; "
                "a client that sees a gap re-subscribes. Another user's account answers an error frame (not_found).",
                "parameters": {"account_id": {"schema": {"type": "integer"}, "description": "One of your broker accounts."}},
                "subscribe": {
                    "message": {
                        "oneOf": [
                            {"name": "snapshot", "summary": self.snapshot_description, "payload": self.snapshot_schema()},
                            {"name": "update", "summary": self.update_description, "payload": self.payload_schema()},
                        ]
                    }
                },
            }
        }

    def payload_schema(self) -> dict[str, Any]:
        schema = json_schema(self.payload_serializer)
        return {"oneOf": [schema, {"type": "null"}]} if self.nullable else schema

    def snapshot_schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.payload_schema()}


def _owns(user: User, account_id: int) -> bool:
    return BrokerAccount.objects.filter(pk=account_id, owner=user).exists()


class OrdersChannel(AccountChannel):
    prefix = "orders"
    seq_field = "orders_seq"
    description = "The account's orders."
    snapshot_description = "The open (non-final) orders."
    update_description = "One order after a change (final states included: drop it from the open list)."
    payload_serializer = OrderSerializer

    def state(self, account: BrokerAccount) -> Any:
        return [order_payload(o) for o in Order.objects.filter(account=account, status__in=OPEN_STATUSES).order_by("id")]


class PositionsChannel(AccountChannel):
    prefix = "positions"
    seq_field = "positions_seq"
    description = "The account's positions with P&L."
    snapshot_description = "The open positions."
    update_description = "One position after a deal or a re-mark (closed ones included: drop it from the open list)."
    payload_serializer = PositionSerializer

    def state(self, account: BrokerAccount) -> Any:
        return [position_payload(p) for p in Position.objects.filter(account=account, status=PositionStatus.OPEN).order_by("id")]


class FundsChannel(AccountChannel):
    prefix = "funds"
    seq_field = "funds_seq"
    description = (
        "The account's money, as GET /api/v1/accounts/{id}/funds: base-currency totals (cash, margin, equity, "
        "buying power), balances per currency and the rates used."
    )
    snapshot_description = "The funds now (null while the broker does not answer)."
    update_description = "The funds after a change."
    payload_serializer = FundsSerializer
    nullable = True  # while the broker does not answer

    def read_snapshot(self, user: User, account_id: int) -> tuple[int, Any]:
        # The broker is asked after the sequence is read, never inside the
        # transaction: the data may be newer than the seq, never older.
        seq, account = super().read_snapshot(user, account_id)
        return seq, funds_payload(account)

    def state(self, account: BrokerAccount) -> Any:
        return account

    def snapshot_schema(self) -> dict[str, Any]:
        return self.payload_schema()


async def ws_command(user: User, api_key: ApiKey | None, frame: dict[str, Any]) -> dict[str, Any]:
    """The ``{"op": "command", ...}`` frame (minus ``op``): one command object,
    optionally with an ``idempotency_key``. Returns the command result for the
    ``ack``; a refusal raises a DomainError, which the gateway sends as an
    ``error`` frame. The read scope is refused by the gateway before this."""
    body = dict(frame)
    key = body.pop("idempotency_key", None)
    if key is not None and not isinstance(key, str):
        raise InvalidInput("idempotency_key must be a string.", fields={"idempotency_key": ["A string is required."]})
    outcome = await database_sync_to_async(commands_from_wire)(user=user, raw=body, source=Source.WS, idempotency_key=key or None)
    return outcome.body
