"""The account's pre-trade risk limits an order must pass before it is
written. Its shape and the instrument's rules are the spec's (``oms.specs``)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from brokers.models import BrokerAccount
from marketdata.quotes import quote_get
from oms.errors import RiskRejected
from oms.models import Order, Side
from oms.specs import OrderSpec

__all__ = ["OrderSpec", "reference_price", "risk_check"]


def reference_price(spec: OrderSpec) -> Decimal | None:
    if spec.price is not None:
        return spec.price
    if spec.stop_price is not None:
        return spec.stop_price
    quote = quote_get(spec.symbol)
    if quote is None:
        return None
    side_price = quote.ask if spec.side == Side.BUY else quote.bid
    return side_price or quote.last


def risk_check(*, account: BrokerAccount, spec: OrderSpec, funds_available: Decimal | None = None) -> None:
    """The account's pre-trade limits (settings; 0 or empty lifts a limit)."""
    limits = settings.OMS_RISK
    max_qty = Decimal(str(limits["MAX_ORDER_QTY"]))
    if max_qty and spec.qty > max_qty:
        raise RiskRejected(f"qty {spec.qty} is over the limit of {max_qty}.", fields={"qty": [f"At most {max_qty}."]})
    allowed = limits["ALLOWED_SYMBOLS"]
    if allowed and spec.symbol not in allowed:
        raise RiskRejected(f"{spec.symbol} is not allowed on this server.", fields={"symbol": ["Not in the allowed symbols."]})
    max_notional = Decimal(str(limits["MAX_ORDER_NOTIONAL"]))
    needs_price = bool(max_notional) or (limits["CHECK_BUYING_POWER"] and funds_available is not None and not spec.reduce_only)
    price = reference_price(spec) if needs_price else None
    notional = None if price is None else spec.qty * price * spec.instrument.multiplier
    if max_notional and notional is not None and notional > max_notional:
        raise RiskRejected(f"Notional {notional:.2f} is over the limit of {max_notional}.", fields={"qty": ["Notional over the limit."]})
    # A coarse guard for cash products; margin products (futures) are checked
    # by the broker, which knows the margin rates.
    cash_product = spec.instrument.type != "future"
    if (
        limits["CHECK_BUYING_POWER"]
        and cash_product
        and funds_available is not None
        and notional is not None
        and not spec.reduce_only
        and notional > funds_available
    ):
        raise RiskRejected(
            f"Buying power {funds_available:.2f} does not cover the notional {notional:.2f}.",
            code="insufficient_buying_power",
            fields={"qty": ["Not enough buying power."]},
        )
    per_second = int(limits["MAX_ORDERS_PER_SECOND"])
    if per_second:
        recent = Order.objects.filter(account=account, created_at__gte=timezone.now() - timedelta(seconds=1)).count()
        if recent >= per_second:
            raise RiskRejected(f"More than {per_second} orders per second.", code="rate_limited")
