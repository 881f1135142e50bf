"""What the paper venue accepts: new-order checks and day-order expiry.
Pure Python (the session and tick rules come from marketdata.sessions and
marketdata.venues, also pure)."""

from __future__ import annotations

from decimal import Decimal

from brokers.paper.book import BUY, LIMIT, MARKET, ORDER_TYPES, SCALE, SIDES, STOP_LIMIT, TIMES_IN_FORCE, InstrumentSpec, MarketState, Order
from marketdata.sessions import next_session_close
from marketdata.venues import tick_size_for

DAY_SECONDS = 86_400
# The paper models hold 18 integer digits and 10 decimals; anything a book
# computes from a qty or a price must fit, or the saved book would differ
# from the one in memory.
LARGEST = Decimal(10) ** 12
LARGEST_NOTIONAL = Decimal(10) ** 16


def on_grid(value: Decimal, step: Decimal) -> bool:
    return step <= 0 or value % step == 0


def out_of_range(name: str, value: Decimal | None) -> str | None:
    """Why ``value`` cannot be stored exactly, or None."""
    if value is None:
        return None
    if not value.is_finite() or abs(value) >= LARGEST:
        return f"{name} {value} is out of range."
    if value != value.quantize(SCALE):
        return f"{name} {value} has more than 10 decimal places."
    return None


def day_order_expiry(session_text: str, tz_name: str, now: float) -> float:
    """When a day order sent at ``now`` expires: the first session close after
    ``now`` (so an order sent outside the session lives through the next one;
    a 24x7 instrument's day closes at midnight in its timezone), by the one
    rule of ``marketdata.sessions``; 00:00 UTC for a session or timezone that
    cannot be read."""
    try:
        close = next_session_close(now, tz_name, session_text)
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        close = None
    return float(close) if close is not None else (now // DAY_SECONDS + 1) * DAY_SECONDS


def new_order_refusal(
    o: Order, spec: InstrumentSpec, market: MarketState | None, *, now: float, stale_seconds: float, reducible: Decimal
) -> str | None:
    """Why the venue refuses a new order, or None. ``reducible``: how much of
    the position an order of this side would reduce."""
    if o.side not in SIDES:
        return f"side must be buy or sell, not {o.side!r}."
    if o.order_type not in ORDER_TYPES:
        return f"order_type must be market, limit, stop or stop_limit, not {o.order_type!r}."
    if o.time_in_force not in TIMES_IN_FORCE:
        return f"time_in_force must be day, gtc or ioc, not {o.time_in_force!r}."
    for name, value in (("qty", o.qty), ("price", o.price), ("stop_price", o.stop_price)):
        if (reason := out_of_range(name, value)) is not None:
            return reason
    if not o.qty > 0:
        return "qty must be positive."
    if not on_grid(o.qty, spec.lot_size):
        return f"qty {o.qty} is not a multiple of the lot size {spec.lot_size}."
    if o.order_type == LIMIT or o.order_type == STOP_LIMIT:
        if o.price is None or not o.price > 0:
            return f"A {o.order_type} order needs a positive price."
        if not on_grid(o.price, tick := tick_size_for(spec, o.price)):
            return f"price {o.price} is not a multiple of the tick size {tick}."
    elif o.price is not None:
        return f"A {o.order_type} order takes no price."
    if o.is_stop:
        if o.stop_price is None or not o.stop_price > 0:
            return f"A {o.order_type} order needs a positive stop_price."
        if not on_grid(o.stop_price, tick := tick_size_for(spec, o.stop_price)):
            return f"stop_price {o.stop_price} is not a multiple of the tick size {tick}."
    elif o.stop_price is not None:
        return f"A {o.order_type} order takes no stop_price."
    if o.reduce_only:
        if reducible <= 0:
            return f"reduce_only: there is no position in {o.symbol} that a {o.side} would reduce."
        if o.qty > reducible:
            return f"reduce_only: qty {o.qty} exceeds the position of {reducible} it may reduce."
    if o.order_type == MARKET:
        if market is None:
            return f"No quote for {o.symbol}: a market order needs a fresh quote."
        age = now - market.time
        if age > stale_seconds:
            return f"The quote for {o.symbol} is stale ({age:.1f} s old, limit {stale_seconds:g} s): a market order needs a fresh quote."
        if (market.ask if o.side == BUY else market.bid) is None:
            return f"The quote for {o.symbol} has no {'ask' if o.side == BUY else 'bid'}: a market order cannot fill."
    reference = o.price or o.stop_price or (None if market is None else (market.ask if o.side == BUY else market.bid))
    if reference is not None and o.qty * reference * spec.multiplier >= LARGEST_NOTIONAL:
        return "The order's notional is out of range."
    return None


def modify_refusal(
    o: Order, spec: InstrumentSpec, *, qty: Decimal | None, price: Decimal | None, stop_price: Decimal | None, reducible: Decimal
) -> str | None:
    """Why the venue refuses to change a working order, or None."""
    for name, value in (("qty", qty), ("price", price), ("stop_price", stop_price)):
        if (reason := out_of_range(name, value)) is not None:
            return reason
    if qty is not None:
        if qty <= 0 or not on_grid(qty, spec.lot_size):
            return f"qty {qty} must be positive and a multiple of the lot size {spec.lot_size}."
        if qty < o.filled_qty:
            return f"qty {qty} is below the filled qty {o.filled_qty}."
    if price is not None:
        if o.order_type not in (LIMIT, STOP_LIMIT):
            return f"A {o.order_type} order has no limit price to change."
        if price <= 0 or not on_grid(price, tick := tick_size_for(spec, price)):
            return f"price {price} must be positive and a multiple of the tick size {tick}."
    if stop_price is not None:
        if not o.is_stop:
            return f"A {o.order_type} order has no stop price to change."
        if o.triggered and stop_price != o.stop_price:
            return "The stop has triggered already: its stop price can no longer change."
        if stop_price <= 0 or not on_grid(stop_price, tick := tick_size_for(spec, stop_price)):
            return f"stop_price {stop_price} must be positive and a multiple of the tick size {tick}."
    new_qty = o.qty if qty is None else qty
    if o.reduce_only and new_qty - o.filled_qty > reducible:
        return f"reduce_only: the new qty leaves {new_qty - o.filled_qty} to fill, more than the position of {reducible} it may reduce."
    return None
