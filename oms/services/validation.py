"""Checks an order must pass before it is written: shape, instrument rules
(lot and tick sizes) and the account's pre-trade risk limits."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.utils import timezone

from brokers.models import BrokerAccount
from marketdata.models import Instrument
from marketdata.quotes import quote_get
from oms.errors import InvalidInput, RiskRejected
from oms.models import Order, OrderType, Side, TimeInForce

CLIENT_ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


def new_client_order_id() -> str:
    # 20 characters: fits every broker's client id / tag field.
    return "tt" + secrets.token_hex(9)


def to_decimal(value: Any, field: str, *, required: bool = False) -> Decimal | None:
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{field} is required.", fields={field: ["This field is required."]})
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise InvalidInput(f"{field} must be a decimal number.", fields={field: ["A number (as a string) is required."]})
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InvalidInput(f"{field} must be a decimal number.", fields={field: ["A valid number is required."]}) from None
    if not number.is_finite():
        raise InvalidInput(f"{field} must be finite.", fields={field: ["A finite number is required."]})
    return number


def _multiple_of(value: Decimal, step: Decimal) -> bool:
    return step <= 0 or (value % step) == 0


@dataclass(frozen=True)
class OrderSpec:
    """A validated ``send_order`` payload."""

    symbol: str
    side: str
    order_type: str
    qty: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    time_in_force: str
    strategy_id: str
    position_id: int | None
    reduce_only: bool
    client_order_id: str
    instrument: Instrument
    # True when the client named the id (it may collide with an earlier
    # order); a generated one is 72 random bits, guarded by the unique index.
    client_named_id: bool = True


def _choice(value: Any, field: str, choices: list[str]) -> str:
    if value not in choices:
        raise InvalidInput(f"{field} must be one of {', '.join(choices)}.", fields={field: [f"One of {', '.join(choices)}."]})
    return str(value)


def order_spec(
    *,
    symbol: Any,
    side: Any,
    order_type: Any,
    qty: Any,
    price: Any = None,
    stop_price: Any = None,
    time_in_force: Any = TimeInForce.GTC,
    strategy_id: Any = "",
    position_id: Any = None,
    reduce_only: Any = False,
    client_order_id: Any = None,
) -> OrderSpec:
    """Validate a send_order payload against the instrument; raise InvalidInput."""
    if not isinstance(symbol, str) or not symbol:
        raise InvalidInput("symbol is required.", fields={"symbol": ["This field is required."]})
    side = _choice(side, "side", Side.values)
    order_type = _choice(order_type, "order_type", OrderType.values)
    time_in_force = _choice(time_in_force or TimeInForce.GTC, "time_in_force", TimeInForce.values)
    quantity = to_decimal(qty, "qty", required=True)
    assert quantity is not None
    limit = to_decimal(price, "price")
    stop = to_decimal(stop_price, "stop_price")
    if not isinstance(reduce_only, bool):
        raise InvalidInput("reduce_only must be true or false.", fields={"reduce_only": ["A boolean is required."]})
    if strategy_id is None:
        strategy_id = ""
    if not isinstance(strategy_id, str | int) or len(str(strategy_id)) > 64:
        raise InvalidInput("strategy_id must be a short string.", fields={"strategy_id": ["At most 64 characters."]})
    if position_id is not None and (isinstance(position_id, bool) or not isinstance(position_id, int)):
        raise InvalidInput("position_id must be an integer.", fields={"position_id": ["An integer is required."]})
    client_named_id = not (client_order_id is None or client_order_id == "")
    if not client_named_id:
        client_order_id = new_client_order_id()
    elif not isinstance(client_order_id, str) or not CLIENT_ORDER_ID.match(client_order_id):
        raise InvalidInput(
            "client_order_id: 1-36 of A-Z a-z 0-9 _ -.", fields={"client_order_id": ["1-36 characters of A-Z, a-z, 0-9, _ and -."]}
        )

    instrument = Instrument.objects.filter(symbol=symbol).first()
    if instrument is None or not instrument.active:
        raise InvalidInput(f"Unknown or inactive symbol '{symbol[:64]}'.", code="unknown_symbol", fields={"symbol": ["Unknown symbol."]})

    errors: dict[str, list[str]] = {}
    if quantity <= 0:
        errors["qty"] = ["Must be greater than zero."]
    elif not _multiple_of(quantity, instrument.lot_size):
        errors["qty"] = [f"Must be a multiple of the lot size {instrument.lot_size.normalize()}."]
    needs_price = order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    needs_stop = order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
    if needs_price and limit is None:
        errors["price"] = [f"A {order_type} order needs a price."]
    if not needs_price and limit is not None:
        errors["price"] = [f"A {order_type} order takes no price."]
    if needs_stop and stop is None:
        errors["stop_price"] = [f"A {order_type} order needs a stop_price."]
    if not needs_stop and stop is not None:
        errors["stop_price"] = [f"A {order_type} order takes no stop_price."]
    for name, value in (("price", limit), ("stop_price", stop)):
        if value is not None and name not in errors:
            if value <= 0:
                errors[name] = ["Must be greater than zero."]
            elif not _multiple_of(value, instrument.tick_size):
                errors[name] = [f"Must be on the tick size {instrument.tick_size.normalize()}."]
    if errors:
        raise InvalidInput(next(iter(errors.values()))[0], fields=errors)
    return OrderSpec(
        symbol=symbol,
        side=side,
        order_type=order_type,
        qty=quantity,
        price=limit,
        stop_price=stop,
        time_in_force=time_in_force,
        strategy_id=str(strategy_id),
        position_id=position_id,
        reduce_only=reduce_only,
        client_order_id=client_order_id,
        instrument=instrument,
        client_named_id=client_named_id,
    )


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
