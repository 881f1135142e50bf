"""Small input and output serializers of the OMS API.

Output: the wire forms of ``oms.payloads`` (the same fields and values as the
WebSocket updates); the serializer fields only describe them for the schema.
Input: commands are validated by ``oms.services.commands`` (one rule for REST,
WebSocket and CLI); the serializers here check the body's shape and document it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rest_framework import serializers

from core.serializers import StrictSerializer
from oms.models import DealKind, OrderStatus, OrderType, PositionSide, PositionStatus, Side, Source, TimeInForce
from oms.payloads import deal_payload, order_payload, position_payload
from oms.services.commands import MAX_BATCH, PAYLOAD_FIELDS


def _decimal(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=28, decimal_places=10, coerce_to_string=True, read_only=True, **kwargs)


class PayloadSerializer(serializers.Serializer):
    """Renders with an ``oms.payloads`` function, so REST equals the streams."""

    payload_of: ClassVar[Callable[[Any], dict[str, Any]]]

    @classmethod
    def columns(cls) -> list[str]:
        """The payload's keys in order (the CSV header)."""
        return list(cls._declared_fields)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return type(self).payload_of(instance)


# --- errors ------------------------------------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))  # type: ignore[assignment]
    request_id = serializers.CharField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# --- orders, deals, positions ----------------------------------------------------------------------


class OrderSerializer(PayloadSerializer):
    payload_of = order_payload

    id = serializers.IntegerField(read_only=True)
    account_id = serializers.IntegerField(read_only=True)
    client_order_id = serializers.CharField(read_only=True)
    broker_order_id = serializers.CharField(read_only=True, allow_null=True)
    symbol = serializers.CharField(read_only=True)
    side = serializers.ChoiceField(choices=Side.choices, read_only=True)
    order_type = serializers.ChoiceField(choices=OrderType.choices, read_only=True)
    qty = _decimal()
    price = _decimal(allow_null=True)
    stop_price = _decimal(allow_null=True)
    time_in_force = serializers.ChoiceField(choices=TimeInForce.choices, read_only=True)
    status = serializers.ChoiceField(choices=OrderStatus.choices, read_only=True)
    status_message = serializers.CharField(read_only=True)
    filled_qty = _decimal()
    avg_fill_price = _decimal(allow_null=True)
    strategy_id = serializers.CharField(read_only=True)
    position_id = serializers.IntegerField(read_only=True, allow_null=True)
    reduce_only = serializers.BooleanField(read_only=True)
    source = serializers.ChoiceField(choices=Source.choices, read_only=True)  # type: ignore[assignment]
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class DealSerializer(PayloadSerializer):
    payload_of = deal_payload

    id = serializers.IntegerField(read_only=True)
    account_id = serializers.IntegerField(read_only=True)
    order_id = serializers.IntegerField(read_only=True, allow_null=True)
    position_id = serializers.IntegerField(read_only=True, allow_null=True)
    strategy_id = serializers.CharField(read_only=True)
    symbol = serializers.CharField(read_only=True)
    side = serializers.ChoiceField(choices=Side.choices, read_only=True)
    qty = _decimal()
    price = _decimal()
    fee = _decimal()
    fee_currency = serializers.CharField(read_only=True)
    kind = serializers.ChoiceField(choices=DealKind.choices, read_only=True)
    broker_trade_id = serializers.CharField(read_only=True, allow_null=True)
    executed_at = serializers.DateTimeField(read_only=True)


class PositionSerializer(PayloadSerializer):
    payload_of = position_payload

    id = serializers.IntegerField(read_only=True)
    account_id = serializers.IntegerField(read_only=True)
    symbol = serializers.CharField(read_only=True)
    strategy_id = serializers.CharField(read_only=True)
    side = serializers.ChoiceField(choices=PositionSide.choices, read_only=True)
    qty = _decimal()
    avg_price = _decimal()
    multiplier = _decimal()
    realized_pnl = _decimal(help_text="In currency, rounded to its minor units.")
    unrealized_pnl = _decimal(help_text="In currency, rounded to its minor units.")
    last_price = _decimal(allow_null=True)
    status = serializers.ChoiceField(choices=PositionStatus.choices, read_only=True)
    opened_at = serializers.DateTimeField(read_only=True)
    closed_at = serializers.DateTimeField(read_only=True, allow_null=True)
    updated_at = serializers.DateTimeField(read_only=True)
    currency = serializers.CharField(read_only=True, help_text="The instrument's: P&L, fees and prices are in it.")
    max_qty = _decimal(help_text="The largest quantity it held.")
    avg_open_price = _decimal(allow_null=True, help_text="Average price of what opened or grew it.")
    avg_close_price = _decimal(allow_null=True, help_text="Average price of what reduced or closed it; null before any.")
    fees = _decimal(help_text="Σ of its deals' fees in its currency (a fee in the pair's base asset at the deal price; others excluded).")


class OrderEventSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    kind = serializers.CharField(read_only=True)
    from_status = serializers.CharField(read_only=True)
    to_status = serializers.CharField(read_only=True)
    actor = serializers.EmailField(source="actor.email", read_only=True, allow_null=True, default=None)
    source = serializers.ChoiceField(choices=Source.choices, read_only=True)  # type: ignore[assignment]
    message = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class OrderDetailSerializer(OrderSerializer):
    events = OrderEventSerializer(many=True, read_only=True)
    deals = DealSerializer(many=True, read_only=True)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return {
            **order_payload(instance),
            "events": OrderEventSerializer(instance.events.all(), many=True).data,
            "deals": [deal_payload(deal) for deal in instance.deals.all()],
        }


class HoldingSerializer(serializers.Serializer):
    symbol = serializers.CharField(read_only=True)
    qty = _decimal()
    avg_price = _decimal()
    last_price = _decimal(allow_null=True)


class HoldingListSerializer(serializers.Serializer):
    results = HoldingSerializer(many=True, read_only=True)
    next = serializers.CharField(read_only=True, allow_null=True, help_text="Always null: the broker answers in one page.")


class FundsSerializer(serializers.Serializer):
    account_id = serializers.IntegerField(read_only=True)
    currency = serializers.CharField(read_only=True)
    cash = _decimal()
    margin_used = _decimal()
    margin_available = _decimal()
    equity = _decimal()


class SyncQueuedSerializer(serializers.Serializer):
    account_id = serializers.IntegerField(read_only=True)
    status = serializers.ChoiceField(choices=["queued"], read_only=True)


# --- commands --------------------------------------------------------------------------------------


class CommandErrorSerializer(ErrorDetailSerializer):
    status = serializers.IntegerField(help_text="The HTTP status this error would have had alone.")


class CommandResultSerializer(serializers.Serializer):
    request_id = serializers.CharField(allow_null=True, help_text="The request_id of the command, echoed.")
    command = serializers.ChoiceField(choices=list(PAYLOAD_FIELDS))
    ok = serializers.BooleanField()
    order_id = serializers.IntegerField(allow_null=True)
    client_order_id = serializers.CharField(allow_null=True)
    status = serializers.CharField(allow_null=True, help_text="The order's status once committed (pending_new...), or done.")
    error = CommandErrorSerializer(allow_null=True)
    deal_ids = serializers.ListField(child=serializers.IntegerField(), required=False, help_text="close_by, reassign: deals booked.")
    order_ids = serializers.ListField(
        child=serializers.IntegerField(), required=False, help_text="cancel_all, flatten_all: orders touched."
    )


class SendOrderSerializer(StrictSerializer):
    """A ``send_order`` payload (validated by the OMS against the instrument)."""

    symbol = serializers.CharField()
    side = serializers.ChoiceField(choices=Side.choices)
    order_type = serializers.ChoiceField(choices=OrderType.choices)
    qty = serializers.CharField(help_text="Decimal string; a multiple of the lot size, > 0.")
    price = serializers.CharField(required=False, allow_null=True, help_text="limit and stop_limit only; on the tick size.")
    stop_price = serializers.CharField(required=False, allow_null=True, help_text="stop and stop_limit only; on the tick size.")
    time_in_force = serializers.ChoiceField(choices=TimeInForce.choices, required=False, default=TimeInForce.GTC)
    strategy_id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    position_id = serializers.IntegerField(required=False, allow_null=True, help_text="Hedging accounts: the position to add to/reduce.")
    reduce_only = serializers.BooleanField(required=False, default=False)
    client_order_id = serializers.CharField(required=False, max_length=36, help_text="Unique per account; generated when absent.")


class CommandSerializer(StrictSerializer):
    """The command envelope of ``POST /oms/commands`` and the WebSocket ``command`` op."""

    account_id = serializers.IntegerField()
    command = serializers.ChoiceField(choices=list(PAYLOAD_FIELDS))
    request_id = serializers.CharField(required=False, allow_null=True)
    payload = serializers.DictField(required=False, help_text="The command's fields (see the REST conventions); unknown ones are refused.")


class BatchOrdersSerializer(StrictSerializer):
    orders = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=MAX_BATCH, help_text="send_order payloads.")


class OrderChangeSerializer(StrictSerializer):
    """Any of the three; decimals as strings."""

    qty = serializers.CharField(required=False, allow_null=True)
    price = serializers.CharField(required=False, allow_null=True)
    stop_price = serializers.CharField(required=False, allow_null=True)


class EmptySerializer(StrictSerializer):
    """``{}`` or no body."""


class ReassignSerializer(StrictSerializer):
    account_id = serializers.IntegerField()
    deal_ids = serializers.ListField(child=serializers.IntegerField(), min_length=1, max_length=MAX_BATCH)
    target_strategy_id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    target_position_id = serializers.IntegerField(required=False, allow_null=True)
