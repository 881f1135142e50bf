"""The account's pre-trade risk limits an order must pass before it is
written. Its shape and the instrument's rules are the spec's (``oms.specs``)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings

from brokers.models import BrokerAccount
from core.money import money_quantize
from marketdata.fx import fx_convert
from marketdata.quotes import quote_get
from oms.errors import RiskRejected
from oms.models import OrderType, Side
from oms.services.funds import BuyingPower
from oms.specs import OrderSpec

__all__ = ["OrderSpec", "reference_price", "risk_check"]


def reference_price(spec: OrderSpec) -> Decimal | None:
    if spec.price is not None:
        return spec.price
    if spec.stop_price is not None and spec.order_type in (OrderType.STOP, OrderType.STOP_LIMIT):
        return spec.stop_price  # a cover order's stop_price is its stop-loss leg's, not its entry
    quote = quote_get(spec.symbol)
    if quote is None:
        return None
    side_price = quote.ask if spec.side == Side.BUY else quote.bid
    return side_price or quote.last


def risk_check(
    *, account: BrokerAccount, spec: OrderSpec, buying_power: BuyingPower | None = None, opening_qty: Decimal | None = None
) -> None:
    """The account's pre-trade limits (settings; 0 or empty lifts a limit).

    ``RISK_MAX_ORDER_NOTIONAL`` is in the account's base currency: the order's
    notional (qty × price × multiplier, in the instrument's currency) is
    converted at the FX rate. Buying power (the OMS's funds projection, in
    its currency) is checked only on ``opening_qty``, the part of the order
    that opens or grows a position: reducing and closing are always allowed."""
    limits = settings.OMS_RISK
    max_qty = Decimal(str(limits["MAX_ORDER_QTY"]))
    if max_qty and spec.qty > max_qty:
        raise RiskRejected(f"qty {spec.qty} is over the limit of {max_qty}.", fields={"qty": [f"At most {max_qty}."]})
    allowed = limits["ALLOWED_SYMBOLS"]
    if allowed and spec.symbol not in allowed:
        raise RiskRejected(f"{spec.symbol} is not allowed on this server.", fields={"symbol": ["Not in the allowed symbols."]})
    max_notional = Decimal(str(limits["MAX_ORDER_NOTIONAL"]))
    opening = spec.qty if opening_qty is None else opening_qty
    # A coarse guard for cash products; margin products (futures) are checked
    # by the broker, which knows the margin rates.
    check_buying_power = (
        bool(limits["CHECK_BUYING_POWER"])
        and buying_power is not None
        and spec.instrument.type != "future"
        and not spec.reduce_only
        and opening > 0
    )
    price = reference_price(spec) if max_notional or check_buying_power else None
    if price is not None:
        unit = price * spec.instrument.multiplier
        currency = spec.instrument.currency
        if max_notional:
            base = account.base_currency
            notional = fx_convert(spec.qty * unit, currency, base, allow_stale=True)
            if notional > max_notional:
                raise RiskRejected(
                    f"Notional {money_quantize(notional, base)} {base} is over the limit of {max_notional} {base}.",
                    fields={"qty": ["Notional over the limit."]},
                )
        if check_buying_power and buying_power is not None:
            needed = fx_convert(opening * unit, currency, buying_power.currency, allow_stale=True)
            if needed > buying_power.amount:
                bp_currency = buying_power.currency
                raise RiskRejected(
                    f"Buying power {money_quantize(buying_power.amount, bp_currency)} {bp_currency} does not cover "
                    f"{money_quantize(needed, bp_currency)} {bp_currency} of new exposure.",
                    code="insufficient_buying_power",
                    fields={"qty": ["Not enough buying power."]},
                )
