"""Orders, their events, deals (fills and internal bookings) and positions.

Wire names are model names. Every write goes through ``oms.services``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from brokers.models import BrokerAccount

QTY: dict[str, Any] = {"max_digits": 28, "decimal_places": 10}
PRICE_SCALE = Decimal("1e-10")  # the columns' scale: amounts are exact to it
# An FX rate: one unit of a currency in another (1/1350 KRW per USD needs
# more places than a price: fx rates keep 12 significant digits).
RATE: dict[str, Any] = {"max_digits": 36, "decimal_places": 20}
RATE_SCALE = Decimal("1e-20")


class Side(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class OrderType(models.TextChoices):
    MARKET = "market", "Market"
    LIMIT = "limit", "Limit"
    STOP = "stop", "Stop"
    STOP_LIMIT = "stop_limit", "Stop limit"


class TimeInForce(models.TextChoices):
    DAY = "day", "Day"
    GTC = "gtc", "Good till canceled"
    IOC = "ioc", "Immediate or cancel"


class OrderStatus(models.TextChoices):
    PENDING_NEW = "pending_new", "Pending new"
    NEW = "new", "New"
    PARTIALLY_FILLED = "partially_filled", "Partially filled"
    FILLED = "filled", "Filled"
    PENDING_CANCEL = "pending_cancel", "Pending cancel"
    PENDING_CHANGE = "pending_change", "Pending change"
    CANCELED = "canceled", "Canceled"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    UNKNOWN = "unknown", "Unknown"


FINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED})
OPEN_STATUSES = frozenset(set(OrderStatus.values) - FINAL_STATUSES)

# The legal transitions (DESIGN.md). Anything else raises.
TRANSITIONS: dict[str, frozenset[str]] = {
    "pending_new": frozenset({"new", "rejected", "unknown", "filled", "partially_filled", "canceled", "expired"}),
    "new": frozenset({"partially_filled", "filled", "pending_cancel", "pending_change", "canceled", "expired"}),
    "partially_filled": frozenset({"partially_filled", "filled", "pending_cancel", "pending_change", "canceled", "expired"}),
    "pending_cancel": frozenset({"canceled", "filled", "partially_filled", "expired", "new"}),
    "pending_change": frozenset({"new", "partially_filled", "filled", "pending_cancel", "canceled", "expired"}),
    "unknown": frozenset({"new", "partially_filled", "filled", "rejected", "canceled", "expired"}),
    "filled": frozenset(),
    "canceled": frozenset(),
    "rejected": frozenset(),
    "expired": frozenset(),
}


class Source(models.TextChoices):
    REST = "rest", "REST"
    WS = "ws", "WebSocket"
    ADMIN = "admin", "Admin"
    CLI = "cli", "CLI"
    RECONCILIATION = "reconciliation", "Reconciliation"
    EXTERNAL = "external", "External"
    BROKER = "broker", "Broker"
    SYSTEM = "system", "System"


class Order(models.Model):
    account = models.ForeignKey(BrokerAccount, on_delete=models.PROTECT, related_name="orders")
    client_order_id = models.CharField(max_length=36)
    broker_order_id = models.CharField(max_length=64, blank=True, default="")
    symbol = models.CharField(max_length=64)
    side = models.CharField(max_length=4, choices=Side.choices)
    order_type = models.CharField(max_length=10, choices=OrderType.choices)
    qty = models.DecimalField(**QTY)
    price = models.DecimalField(**QTY, null=True, blank=True)
    stop_price = models.DecimalField(**QTY, null=True, blank=True)
    time_in_force = models.CharField(max_length=3, choices=TimeInForce.choices, default=TimeInForce.GTC)
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING_NEW)
    filled_qty = models.DecimalField(**QTY, default=0)
    avg_fill_price = models.DecimalField(**QTY, null=True, blank=True)
    strategy_id = models.CharField(max_length=64, blank=True, default="")
    position = models.ForeignKey("Position", null=True, blank=True, on_delete=models.SET_NULL, related_name="orders")
    reduce_only = models.BooleanField(default=False)
    # Broker-specific fields the account's broker takes (oms.specs.EXTRA_ORDER_FIELDS).
    broker_fields = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.REST)
    status_message = models.TextField(blank=True, default="")
    # Set when the send to the broker starts: an order in pending_new with a
    # send time may have reached the broker (ask before sending again).
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "client_order_id"], name="order_unique_client_order_id"),
            models.CheckConstraint(condition=Q(filled_qty__gte=0) & Q(filled_qty__lte=models.F("qty")), name="order_filled_within_qty"),
            models.CheckConstraint(condition=Q(qty__gt=0), name="order_qty_positive"),
        ]
        indexes = [
            models.Index(fields=["account", "status"]),
            models.Index(fields=["account", "broker_order_id"]),
            models.Index(fields=["status", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.side} {self.qty} {self.symbol} {self.status}"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def remaining_qty(self):  # type: ignore[no-untyped-def]
        return self.qty - self.filled_qty


class OrderEvent(models.Model):
    """One thing that happened to an order: a transition, a fill, a request."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, default="transition")
    from_status = models.CharField(max_length=16, blank=True, default="")
    to_status = models.CharField(max_length=16, blank=True, default="")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source = models.CharField(max_length=16, choices=Source.choices)
    message = models.TextField(blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)  # raw broker payload, secrets masked
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.from_status}->{self.to_status}"


class DealKind(models.TextChoices):
    TRADE = "trade", "Trade"
    CLOSE_BY = "close_by", "Close by"
    REASSIGN = "reassign", "Reassign"
    # What the broker already held when the terminal first synced the account
    # (or a correction staff booked): opens the position at the broker's
    # quantity and average price, so selling a holding reduces it.
    EXTERNAL = "external", "External (held at the broker)"


class PositionSide(models.TextChoices):
    LONG = "long", "Long"
    SHORT = "short", "Short"


class PositionStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class Position(models.Model):
    """A projection of its deals at average cost. Amounts are in ``currency``
    (the instrument's) at full precision (1e-10); they are rounded to the
    currency's minor units only on the wire (``core.money``).

    Average cost is kept as ``open_cost`` (Σ qty × price of the open quantity,
    without the multiplier) and ``qty``; ``avg_price`` is its quotient, for
    display. A close takes its share of the cost, and a full close all of it,
    so realized P&L never drifts. History: ``max_qty``, ``opened_qty`` /
    ``opened_value`` (every deal or part of a deal that opened or grew it),
    ``closed_qty`` / ``closed_value`` (every part that reduced it)."""

    account = models.ForeignKey(BrokerAccount, on_delete=models.PROTECT, related_name="positions")
    symbol = models.CharField(max_length=64)
    strategy_id = models.CharField(max_length=64, blank=True, default="")
    # The side it holds, or held last once closed (a flat position keeps its side).
    side = models.CharField(max_length=5, choices=PositionSide.choices)
    qty = models.DecimalField(**QTY, default=0)
    avg_price = models.DecimalField(**QTY, default=0)
    multiplier = models.DecimalField(max_digits=20, decimal_places=10, default=1)
    currency = models.CharField(max_length=10, default="USD")
    open_cost = models.DecimalField(**QTY, default=0)
    max_qty = models.DecimalField(**QTY, default=0)
    opened_qty = models.DecimalField(**QTY, default=0)
    opened_value = models.DecimalField(**QTY, default=0)
    closed_qty = models.DecimalField(**QTY, default=0)
    closed_value = models.DecimalField(**QTY, default=0)
    # Σ of its deals' fees in ``currency`` (see oms.services.positions.fee_in_currency).
    fees = models.DecimalField(**QTY, default=0)
    realized_pnl = models.DecimalField(**QTY, default=0)
    unrealized_pnl = models.DecimalField(**QTY, default=0)
    # P&L in the account's base currency (the one when the position opened):
    # realized = Σ of its deals' realized P&L, each at its deal's rate (null
    # once a closing deal had no rate); unrealized at ``rate``, the value of
    # one unit of ``currency`` in ``base_currency`` at the last mark or deal.
    base_currency = models.CharField(max_length=10, default="USD")
    realized_pnl_base = models.DecimalField(**QTY, null=True, blank=True, default=0)
    unrealized_pnl_base = models.DecimalField(**QTY, null=True, blank=True, default=0)
    rate = models.DecimalField(**RATE, null=True, blank=True)
    last_price = models.DecimalField(**QTY, null=True, blank=True)
    status = models.CharField(max_length=6, choices=PositionStatus.choices, default=PositionStatus.OPEN)
    # The one working close order of this position (one close at a time).
    closing_order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["account", "status", "symbol"])]
        constraints = [models.CheckConstraint(condition=Q(qty__gte=0), name="position_qty_not_negative")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.side} {self.qty} {self.symbol} ({self.status})"

    @property
    def avg_open_price(self) -> Decimal | None:
        """The average price of everything that opened or grew it."""
        return _average(self.opened_value, self.opened_qty)

    @property
    def avg_close_price(self) -> Decimal | None:
        """The average price of everything that reduced or closed it."""
        return _average(self.closed_value, self.closed_qty)


def _average(value: Decimal, qty: Decimal) -> Decimal | None:
    return None if not qty else (Decimal(value) / Decimal(qty)).quantize(PRICE_SCALE)


class Deal(models.Model):
    """A fill at the broker (``trade``) or an internal booking (``close_by``, ``reassign``)."""

    account = models.ForeignKey(BrokerAccount, on_delete=models.PROTECT, related_name="deals")
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.PROTECT, related_name="deals")
    position = models.ForeignKey(Position, null=True, blank=True, on_delete=models.PROTECT, related_name="deals")
    strategy_id = models.CharField(max_length=64, blank=True, default="")
    symbol = models.CharField(max_length=64)
    side = models.CharField(max_length=4, choices=Side.choices)
    qty = models.DecimalField(**QTY)
    price = models.DecimalField(**QTY)
    fee = models.DecimalField(**QTY, default=0)
    # The fee's currency (an exchange may charge the base asset or its own
    # coin); the instrument's currency unless the broker says otherwise.
    fee_currency = models.CharField(max_length=10, default="USD")
    # The instrument's currency; ``rate`` is one unit of it in the account's
    # ``base_currency`` (the account's) at the deal (null when no rate was
    # known), the rate its realized P&L (``realized_pnl``, in ``currency``) is
    # converted at.
    currency = models.CharField(max_length=10, default="USD")
    base_currency = models.CharField(max_length=10, default="USD")
    rate = models.DecimalField(**RATE, null=True, blank=True)
    realized_pnl = models.DecimalField(**QTY, default=0)
    realized_pnl_base = models.DecimalField(**QTY, null=True, blank=True, default=0)
    kind = models.CharField(max_length=10, choices=DealKind.choices, default=DealKind.TRADE)
    broker_trade_id = models.CharField(max_length=64, null=True, blank=True)
    payload = models.JSONField(default=dict, blank=True)  # raw broker payload, secrets masked
    # reassign: the deal this booking moves (reversal and repetition both point at it).
    origin = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="bookings")
    executed_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # A replayed fill is a no-op: one deal per broker trade id per account.
            models.UniqueConstraint(
                fields=["account", "broker_trade_id"], condition=Q(broker_trade_id__isnull=False), name="deal_unique_broker_trade_id"
            ),
            models.CheckConstraint(condition=Q(qty__gt=0), name="deal_qty_positive"),
        ]
        indexes = [models.Index(fields=["account", "executed_at"]), models.Index(fields=["account", "symbol"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.side} {self.qty} {self.symbol} @ {self.price}"


class IdempotencyKey(models.Model):
    """Claimed by insert under the unique constraint, never read-then-insert."""

    account = models.ForeignKey(BrokerAccount, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=128)
    fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "key"], name="idempotency_unique_account_key")]

    def __str__(self) -> str:
        return f"{self.account_id}:{self.key}"


class FundsProjection(models.Model):
    """The last funds the account's broker reported, as the wire form
    (``oms.services.funds.funds_payload``), refreshed after every funds change
    and sync. The pre-trade buying-power check reads it: no broker call on the
    request path."""

    account = models.OneToOneField(BrokerAccount, on_delete=models.CASCADE, primary_key=True, related_name="funds_projection")
    currency = models.CharField(max_length=10)
    buying_power = models.DecimalField(**QTY)
    payload = models.JSONField(default=dict)
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.account_id}: {self.buying_power} {self.currency}"
