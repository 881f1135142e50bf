"""Small input and output serializers of the OMS API.

Output: the wire forms of ``oms.payloads`` (the same fields and values as the
WebSocket updates); the serializer fields only describe them for the schema.
Input: the command specs of ``oms.specs`` (one per payload, the same for
REST, WebSocket, admin and CLI) parse and document every request body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rest_framework import serializers

from core import serializers as core_serializers
from oms.models import DealKind, OrderStatus, OrderType, PositionSide, PositionStatus, Side, Source, TimeInForce
from oms.payloads import deal_payload, order_payload, position_payload
from oms.specs import PAYLOAD_SPECS


def _decimal(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=28, decimal_places=10, coerce_to_string=True, read_only=True, **kwargs)


def _rate(**kwargs: Any) -> serializers.DecimalField:
    """An FX rate: more places than a price (1/1350 is 0.000740740740741)."""
    return serializers.DecimalField(max_digits=36, decimal_places=20, coerce_to_string=True, read_only=True, **kwargs)


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


# The error shape is core's (one definition); named here too for the OMS views.
ErrorDetailSerializer = core_serializers.ErrorDetailSerializer
ErrorSerializer = core_serializers.ErrorSerializer


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
    broker_fields = serializers.DictField(read_only=True, help_text="Broker-specific fields the order was sent with.")
    sent_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="When it was handed to the broker; null until then.")
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
    currency = serializers.CharField(read_only=True, help_text="The instrument's.")
    rate = _rate(allow_null=True, help_text="One unit of currency in base_currency at the deal.")
    realized_pnl = _decimal(help_text="What the deal realized, in currency.")
    base_currency = serializers.CharField(read_only=True)
    realized_pnl_base = _decimal(allow_null=True, help_text="realized_pnl at rate.")
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
    base_currency = serializers.CharField(read_only=True, help_text="The account's base currency when it opened.")
    rate = _rate(allow_null=True, help_text="One unit of currency in base_currency at the last mark or deal.")
    realized_pnl_base = _decimal(allow_null=True, help_text="Σ of its deals' realized P&L, each at its deal's rate; null if one had none.")
    unrealized_pnl_base = _decimal(allow_null=True, help_text="unrealized_pnl at rate.")


class OrderEventSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    kind = serializers.CharField(read_only=True)
    from_status = serializers.CharField(read_only=True)
    to_status = serializers.CharField(read_only=True)
    actor = serializers.EmailField(source="actor.email", read_only=True, allow_null=True, default=None)
    source = serializers.ChoiceField(choices=Source.choices, read_only=True)  # type: ignore[assignment]
    message = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    payload = serializers.JSONField(
        read_only=True, help_text="The broker's raw answer with this event (an exchange's info), secrets masked."
    )


class DealDetailSerializer(DealSerializer):
    payload = serializers.JSONField(read_only=True, help_text="The broker's raw trade (an exchange's info), secrets masked.")


class OrderDetailSerializer(OrderSerializer):
    events = OrderEventSerializer(many=True, read_only=True)
    deals = DealDetailSerializer(many=True, read_only=True)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return {
            **order_payload(instance),
            "events": OrderEventSerializer(instance.events.all(), many=True).data,
            "deals": [{**deal_payload(deal), "payload": deal.payload} for deal in instance.deals.all()],
        }


class HoldingSerializer(serializers.Serializer):
    symbol = serializers.CharField(read_only=True)
    qty = _decimal(help_text="Held, the T+1 quantity (bought, not yet settled) included.")
    avg_price = _decimal(allow_null=True, help_text="The average cost per unit; null where the broker cannot tell it (no P&L then).")
    last_price = _decimal(allow_null=True)
    t1_qty = _decimal(help_text="Of qty, bought but not yet settled (Kite's t1_quantity); 0 where the broker has none.")
    pnl = _decimal(allow_null=True, help_text="The broker's P&L of the holding, in currency (null where it gives none).")
    day_change = _decimal(allow_null=True, help_text="Today's change of the holding's value, in currency (null where none).")
    currency = serializers.CharField(read_only=True, help_text="The currency of pnl and the prices (empty: the account's).")


class HoldingListSerializer(serializers.Serializer):
    results = HoldingSerializer(many=True, read_only=True)
    next = serializers.CharField(read_only=True, allow_null=True, help_text="Always null: the broker answers in one page.")


class BalanceSerializer(serializers.Serializer):
    currency = serializers.CharField(read_only=True)
    cash = _decimal(help_text="The ledger balance in currency, rounded to its minor units.")
    available = _decimal(allow_null=True, help_text="Free to trade, where the broker says.")


class FundsSerializer(serializers.Serializer):
    """Totals in the account's base currency (``currency``), each rounded to its
    minor units, and the balances per currency they are made of."""

    account_id = serializers.IntegerField(read_only=True)
    currency = serializers.CharField(read_only=True, help_text="The base currency of every total.")
    cash = _decimal(help_text="Σ of the balances, each at its rate.")
    margin_used = _decimal()
    margin_available = _decimal(help_text="Equity less margin in use.")
    equity = _decimal(help_text="Cash plus holdings at market plus unrealized P&L of margin products.")
    unrealized_pnl = _decimal(
        allow_null=True, help_text="Open positions' unrealized P&L, apart from cash (equity = cash + it), where the broker reports it."
    )
    balances = BalanceSerializer(many=True, read_only=True, help_text="One line per currency held.")
    buying_power = _decimal(help_text="What may still open or grow positions (margin_available less working orders' reservations).")
    rates = serializers.DictField(
        child=serializers.CharField(), read_only=True, help_text="One unit of each currency in the base currency (decimal strings)."
    )


class SyncQueuedSerializer(serializers.Serializer):
    account_id = serializers.IntegerField(read_only=True)
    status = serializers.ChoiceField(choices=["queued"], read_only=True)


class ExternalBookingSerializer(serializers.Serializer):
    deal_id = serializers.IntegerField(read_only=True)
    symbol = serializers.CharField(read_only=True)
    side = serializers.ChoiceField(choices=Side.choices, read_only=True)
    qty = serializers.CharField(read_only=True, help_text="Decimal string.")
    price = serializers.CharField(read_only=True, help_text="Decimal string: the broker's average price.")


class SyncDriftSerializer(serializers.Serializer):
    symbol = serializers.CharField(read_only=True)
    broker_qty = serializers.CharField(read_only=True, help_text="Signed decimal string (long > 0).")
    terminal_qty = serializers.CharField(read_only=True, help_text="Signed decimal string: the open positions' sum.")


class SyncSummarySerializer(serializers.Serializer):
    """What one account sync did (``oms.services.sync.SyncSummary``)."""

    account_id = serializers.IntegerField(read_only=True)
    outcome = serializers.ChoiceField(choices=["ok", "error", "skipped"], read_only=True, help_text="skipped: a sync was running.")
    message = serializers.CharField(read_only=True)
    initial = serializers.BooleanField(read_only=True, help_text="The account's first sync: what the broker holds is booked.")
    started_at = serializers.DateTimeField(read_only=True, allow_null=True)
    duration = serializers.FloatField(read_only=True, help_text="Seconds.")
    error = serializers.CharField(read_only=True, help_text="The failure, secrets masked (empty when ok).")
    held = serializers.IntegerField(read_only=True, help_text="Symbols held at the broker.")
    booked = ExternalBookingSerializer(many=True, read_only=True, help_text="External deals booked by the first sync.")
    drift = SyncDriftSerializer(many=True, read_only=True, help_text="Quantities the broker and the terminal disagree on.")
    moving = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Symbols whose quantity moved while syncing: compared next time."
    )
    reconcile = serializers.DictField(read_only=True, allow_null=True, help_text="The reconciliation's summary.")


# --- commands --------------------------------------------------------------------------------------


class CommandErrorSerializer(ErrorDetailSerializer):
    status = serializers.IntegerField(help_text="The HTTP status this error would have had alone.")


class CommandResultSerializer(serializers.Serializer):
    request_id = serializers.CharField(allow_null=True, help_text="The request_id of the command, echoed.")
    command = serializers.ChoiceField(choices=list(PAYLOAD_SPECS))
    ok = serializers.BooleanField()
    order_id = serializers.IntegerField(allow_null=True)
    client_order_id = serializers.CharField(allow_null=True)
    status = serializers.CharField(allow_null=True, help_text="The order's status once committed (pending_new...), or done.")
    error = CommandErrorSerializer(allow_null=True)
    deal_ids = serializers.ListField(child=serializers.IntegerField(), required=False, help_text="close_by, reassign: deals booked.")
    order_ids = serializers.ListField(
        child=serializers.IntegerField(), required=False, help_text="cancel_all, flatten_all: orders touched."
    )


class WsEndpointCountsSerializer(serializers.Serializer):
    gateway = serializers.IntegerField(help_text="Open connections to /api/v1/ws.")
    orders = serializers.IntegerField(help_text="Open connections to /api/v1/ws/orders and /api/v1/ws/orders/{account_id}.")


class WsAccountConnectionsSerializer(serializers.Serializer):
    account_id = serializers.IntegerField()
    connections = serializers.IntegerField(help_text="Open /api/v1/ws/orders connections streaming this account.")


class WsStatusSerializer(serializers.Serializer):
    connections = serializers.IntegerField(help_text="Open WebSocket connections, every process.")
    endpoints = WsEndpointCountsSerializer()
    accounts = WsAccountConnectionsSerializer(many=True, help_text="Your accounts only.")
