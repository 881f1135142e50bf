"""One spec per command payload, and the typed values the services receive.

The specs are DRF serializers, not validating dataclasses, for three reasons:
drf-spectacular derives the OpenAPI request bodies from them (and, through
``oms.specs.schema``, the AsyncAPI ``command`` message), so no second
description of a payload exists; DRF collects the errors per field and per
batch index (``[i].field``, ``orders[i].field``), which ``core.exceptions``
flattens into the one error shape; and the same classes serve REST, the
WebSocket ``command`` op, the admin and the CLI. What a spec returns
(``validated_data``) is a frozen dataclass (``OrderSpec``, ``ChangeSpec``...):
services take those, never a raw dict.

A spec's context may carry the account's broker ``Capabilities``
(``spec_context``): ``send_order`` then refuses at once, with the code
``unsupported_by_broker``, an order type, a time in force or a
broker-specific field the broker does not take.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

from brokers.base import BrokerError, Capabilities
from brokers.models import BrokerAccount
from brokers.registry import broker_for
from core.decimals import decimal_str
from core.exceptions import flatten_fields
from core.serializers import StrictSerializer
from marketdata.models import Instrument
from marketdata.quotes import quote_get
from marketdata.selectors import instrument_tradable
from marketdata.sessions import contract_expired
from marketdata.venues import SIM, tick_size_for, venue_traded_by, venues_of
from oms.errors import InvalidInput
from oms.models import OrderType, Side, TimeInForce
from oms.specs.dialects import order_payload_translate
from oms.specs.fields import (
    BooleanField,
    ChoiceField,
    ClientOrderIdField,
    IdField,
    PlainDecimalField,
    RequestIdField,
    TextField,
    new_client_order_id,
)

logger = logging.getLogger(__name__)

#: Most commands (or orders, or deals) in one request.
MAX_BATCH = 500
UNKNOWN_SYMBOL = "unknown_symbol"
CONTRACT_EXPIRED = "contract_expired"
UNSUPPORTED_BY_BROKER = "unsupported_by_broker"
INSTRUMENT_NOT_TRADABLE = "instrument_not_tradable"
BELOW_EXCHANGE_MINIMUM = "below_exchange_minimum"
# Error codes that name the refusal better than validation_error.
_DOMAIN_CODES = (UNSUPPORTED_BY_BROKER, INSTRUMENT_NOT_TRADABLE, UNKNOWN_SYMBOL, BELOW_EXCHANGE_MINIMUM)

#: Kite's cover order: an intraday entry with a compulsory stop-loss leg
#: whose trigger is the order's ``stop_price`` (Kite's ``trigger_price``).
COVER = "co"
COVER_PRODUCT = "MIS"

#: Broker-specific optional ``send_order`` fields: name -> a field factory.
#: A broker takes those its ``Capabilities.extra_order_fields`` names; every
#: other broker refuses them (``unsupported_by_broker``). One line per field:
#: ``"product": lambda: ChoiceField(choices=["CNC", "MIS", "NRML"], required=False),``
EXTRA_ORDER_FIELDS: dict[str, Callable[[], serializers.Field]] = {
    # Kite: the product (delivery, carry forward, intraday, margin trading)
    # and the variety; iceberg orders' legs and leg quantity; a TTL order's minutes.
    "product": lambda: ChoiceField(choices=["CNC", "NRML", "MIS", "MTF"], required=False, allow_null=True),
    "variety": lambda: ChoiceField(choices=["regular", "amo", "co", "iceberg"], required=False, allow_null=True),
    "iceberg_legs": lambda: serializers.IntegerField(min_value=2, max_value=10, required=False, allow_null=True),
    "iceberg_quantity": lambda: serializers.IntegerField(min_value=1, max_value=10**9, required=False, allow_null=True),
    "validity_ttl": lambda: serializers.IntegerField(
        min_value=1, max_value=1440, required=False, allow_null=True, help_text="Minutes a day order lives (Kite's TTL validity)."
    ),
}


# --- the typed values ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderSpec:
    """A validated ``send_order`` payload (the instrument resolved)."""

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
    #: Broker-specific fields the account's broker takes (``EXTRA_ORDER_FIELDS``).
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OrderRef:
    """An order named by id or by client order id (``cancel_order``)."""

    order_id: int | None = None
    client_order_id: str | None = None


@dataclass(frozen=True)
class ChangeSpec(OrderRef):
    """``change_order``: at least one of the new values."""

    qty: Decimal | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None


@dataclass(frozen=True)
class ClosePositionSpec:
    position_id: int


@dataclass(frozen=True)
class CloseBySpec:
    position_id_a: int
    position_id_b: int


@dataclass(frozen=True)
class ReassignSpec:
    deal_ids: tuple[int, ...]
    target_strategy_id: str = ""
    target_position_id: int | None = None


@dataclass(frozen=True)
class NoPayload:
    """``cancel_all``, ``flatten_all``: nothing to say."""


# --- rules shared with the services -----------------------------------------------------------------


def _on_step(value: Decimal, step: Decimal) -> bool:
    # Enough precision for 28-digit values over 10-place steps: the default
    # context (28 digits) raises InvalidOperation on such a quotient.
    with localcontext() as context:
        context.prec = 80
        return step <= 0 or value % step == 0


def instrument_errors(
    instrument: Instrument, *, qty: Decimal | None = None, price: Decimal | None = None, stop_price: Decimal | None = None
) -> dict[str, list[str]]:
    """The lot and tick rules of an instrument (send and change)."""
    errors: dict[str, list[str]] = {}
    if qty is not None:
        if qty <= 0:
            errors["qty"] = ["Must be greater than zero."]
        elif not _on_step(qty, instrument.lot_size):
            errors["qty"] = [f"Must be a multiple of the lot size {decimal_str(instrument.lot_size)}."]
    for name, value in (("price", price), ("stop_price", stop_price)):
        if value is None:
            continue
        if value <= 0:
            errors[name] = ["Must be greater than zero."]
        elif not _on_step(value, tick := tick_size_for(instrument, value)):
            # Per venue: KRX's tick depends on the price band (marketdata.venues).
            errors[name] = [f"Must be on the tick size {decimal_str(tick)}."]
    return errors


def instrument_minimum_errors(
    instrument: Instrument, *, qty: Decimal, price: Decimal | None, reduce_only: bool = False
) -> dict[str, list[ErrorDetail]]:
    """The exchange's minimum order amount and notional (qty x the limit
    price, else the last quote; a reduce-only order is exempt from the
    notional, as exchanges do), refused before anything is sent."""
    errors: dict[str, list[ErrorDetail]] = {}
    if instrument.min_amount and qty < instrument.min_amount:
        message = f"Below the exchange's minimum amount {decimal_str(instrument.min_amount)}."
        errors["qty"] = _refused(message, BELOW_EXCHANGE_MINIMUM)
    if instrument.min_notional and not reduce_only and "qty" not in errors:
        if price is None:
            quote = quote_get(instrument.symbol)
            price = quote.last if quote is not None else None
        if price is not None and qty * price * (instrument.multiplier or 1) < instrument.min_notional:
            message = f"Below the exchange's minimum order value {decimal_str(instrument.min_notional)} {instrument.currency}."
            errors["qty"] = _refused(message, BELOW_EXCHANGE_MINIMUM)
    return errors


def instrument_refusal(symbol: str) -> tuple[Instrument | None, str, str]:
    """The instrument a new order may trade, or None with why not (message, code)."""
    instrument = instrument_tradable(symbol=symbol)
    if instrument is None:
        return None, f"Unknown or inactive symbol '{symbol[:64]}'.", UNKNOWN_SYMBOL
    if contract_expired(instrument.expiry, instrument.timezone, instrument.session, time.time()):
        # It trades no more (the venue stops quoting it): a limit order would sit forever.
        return None, f"{symbol[:64]} expired on {instrument.expiry}: it trades no more.", CONTRACT_EXPIRED
    return instrument, "", ""


def instrument_trade_refusal(account: BrokerAccount | None, capabilities: Capabilities | None, instrument: Instrument) -> str | None:
    """Why ``account`` may not trade ``instrument``, or None. A venue that
    trades any instrument (paper) needs quotes to trade on: a simulated instrument has them, a broker's once its
    feed delivered one. Any other account trades only its broker's venues."""
    if account is None or capabilities is None:
        return None  # no adapter: the send refuses the account (broker_not_configured)
    any_instrument = capabilities.any_instrument
    symbol = instrument.symbol
    if any_instrument:
        if instrument.venue == SIM or quote_get(symbol) is not None:
            return None
        return f"{symbol} has no quotes yet: a paper account trades a broker's instrument on its live prices."
    if venue_traded_by(instrument.venue, kind=account.kind, exchange_id=account.exchange_id):
        return None
    venues = venues_of(kind=account.kind, exchange_id=account.exchange_id)
    return f"{symbol} trades on {instrument.venue}: a {account.kind} account trades {', '.join(venues) or 'no'} instruments only."


def instrument_for_order(symbol: str) -> Instrument:
    instrument, message, code = instrument_refusal(symbol)
    if instrument is None:
        raise InvalidInput(message, code=code, fields={"symbol": [message]})
    return instrument


def broker_capabilities(account: BrokerAccount) -> Capabilities | None:
    """What the account's broker takes; None without an adapter (the send
    then refuses the order as ``broker_not_configured``)."""
    try:
        return broker_for(account).capabilities
    except BrokerError:
        return None
    except Exception:
        # An adapter that cannot even be built (credentials unset...): the
        # send refuses the account; the spec just cannot say what it takes.
        logger.warning("capabilities of account %s unknown: its adapter failed to build", account.pk, exc_info=True)
        return None


def default_time_in_force(capabilities: Capabilities | None) -> str:
    """gtc, or day for a broker that takes no gtc (KIS, Kite)."""
    if capabilities is not None and TimeInForce.GTC not in capabilities.times_in_force and TimeInForce.DAY in capabilities.times_in_force:
        return TimeInForce.DAY
    return TimeInForce.GTC


def spec_context(account: BrokerAccount | None) -> dict[str, Any]:
    """The context a spec checks an account's commands against."""
    return {"account": account, "capabilities": None if account is None else broker_capabilities(account)}


def spec_error(errors: Any, message: str | None = None) -> InvalidInput:
    """A spec's errors as the one InvalidInput: fields flattened (``[i].x``),
    the code of a domain refusal (``unknown_symbol``...) kept."""
    fields = flatten_fields(errors)
    codes = {getattr(detail, "code", None) for detail in _details(errors)}
    code = next((c for c in _DOMAIN_CODES if c in codes), None)
    non_field = fields.get("non_field_errors")
    if message is None:
        first_field, first = next(iter(fields.items()), ("", ["The request is not valid."]))
        message = first[0] if first_field in ("non_field_errors", "") else f"{first_field}: {first[0]}"
    if non_field is not None and len(fields) == 1 and len(non_field) == 1:
        fields = {}
    return InvalidInput(message, code=code, fields=fields)


def _details(errors: Any) -> list[Any]:
    if isinstance(errors, Mapping):
        return [d for value in errors.values() for d in _details(value)]
    if isinstance(errors, list):
        return [d for value in errors for d in _details(value)]
    return [errors]


def spec_parse(
    spec: type[serializers.Serializer],
    data: Any,
    *,
    context: Mapping[str, Any] | None = None,
    many: bool = False,
    message: str | None = None,
) -> Any:
    """Validate ``data`` with ``spec`` (``many``: a non-empty array of at most
    ``MAX_BATCH``, errors named ``[i].field``); the typed value, or InvalidInput (422)."""
    kwargs: dict[str, Any] = {"many": True, "min_length": 1, "max_length": MAX_BATCH} if many else {}
    serializer = spec(data=data, context=dict(context or {}), **kwargs)
    if not serializer.is_valid():
        raise spec_error(serializer.errors, message)
    return serializer.validated_data


def _refused(message: str, code: str = "invalid") -> list[ErrorDetail]:
    return [ErrorDetail(message, code=code)]


# --- the specs ---------------------------------------------------------------------------------------


class PayloadSpec(StrictSerializer):
    """A command payload: unknown fields refused; ``validated_data`` is typed."""

    def create(self, validated_data: Any) -> Any:
        raise NotImplementedError  # specs only parse

    def update(self, instance: Any, validated_data: Any) -> Any:
        raise NotImplementedError


class SendOrderPayload(PayloadSpec):
    """A ``send_order`` payload, checked against the instrument (lot and tick
    sizes) and the account's broker (order types, times in force, fields)."""

    symbol = TextField(max_length=64)
    side = ChoiceField(choices=Side.choices)
    order_type = ChoiceField(choices=OrderType.choices)
    qty = PlainDecimalField(help_text="A multiple of the lot size, > 0.")
    price = PlainDecimalField(required=False, allow_null=True, help_text="limit and stop_limit only; on the tick size.")
    stop_price = PlainDecimalField(required=False, allow_null=True, help_text="stop and stop_limit only; on the tick size.")
    time_in_force = ChoiceField(
        choices=TimeInForce.choices, required=False, allow_null=True, help_text="Default gtc (day where the broker takes no gtc)."
    )
    strategy_id = TextField(max_length=64, accept_int=True, required=False, allow_blank=True, allow_null=True)
    position_id = IdField(required=False, allow_null=True, help_text="Hedging accounts: the position to add to or reduce.")
    reduce_only = BooleanField(required=False)
    client_order_id = ClientOrderIdField(required=False, allow_blank=True, allow_null=True)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for name, make in EXTRA_ORDER_FIELDS.items():
            fields[name] = make()
        return fields

    def to_internal_value(self, data: Any) -> Any:
        # A broker's own field names (Kite's), for its accounts, become ours first.
        capabilities: Capabilities | None = self.context.get("capabilities")
        if capabilities is not None and capabilities.order_dialect:
            data = order_payload_translate(capabilities.order_dialect, data)
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> OrderSpec:
        order_type = attrs["order_type"]
        capabilities: Capabilities | None = self.context.get("capabilities")
        time_in_force = attrs.get("time_in_force") or default_time_in_force(capabilities)
        extra = {name: attrs[name] for name in EXTRA_ORDER_FIELDS if attrs.get(name) is not None}
        if extra.get("variety") == COVER:
            extra.setdefault("product", COVER_PRODUCT)  # Kite's cover orders are intraday
        refused: dict[str, list[ErrorDetail]] = {}
        if capabilities is not None:
            if order_type not in capabilities.order_types:
                refused["order_type"] = _refused(f"This account's broker does not take {order_type} orders.", UNSUPPORTED_BY_BROKER)
            if time_in_force not in capabilities.times_in_force:
                refused["time_in_force"] = _refused(f"This account's broker does not take {time_in_force} orders.", UNSUPPORTED_BY_BROKER)
            for name in extra:
                if name not in capabilities.extra_order_fields:
                    refused[name] = _refused(f"This account's broker does not take {name}.", UNSUPPORTED_BY_BROKER)
            client_order_id = attrs.get("client_order_id")
            pattern = capabilities.client_order_id_pattern
            if client_order_id and pattern and re.fullmatch(pattern, client_order_id) is None:
                refused["client_order_id"] = _refused(
                    f"This account's broker carries client order ids matching {pattern} only; leave it out to have one generated.",
                    UNSUPPORTED_BY_BROKER,
                )
        refused.update(_extra_errors(extra, order_type, time_in_force, attrs["qty"]))
        if refused:
            raise serializers.ValidationError(refused)
        instrument, message, code = instrument_refusal(attrs["symbol"])
        if instrument is None:
            raise serializers.ValidationError({"symbol": _refused(message, code)})
        not_tradable = instrument_trade_refusal(self.context.get("account"), capabilities, instrument)
        if not_tradable is not None:
            raise serializers.ValidationError({"symbol": _refused(not_tradable, INSTRUMENT_NOT_TRADABLE)})
        price, stop_price = attrs.get("price"), attrs.get("stop_price")
        errors = instrument_errors(instrument, qty=attrs["qty"], price=price, stop_price=stop_price)
        needs_price = order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        cover = extra.get("variety") == COVER
        needs_stop = order_type in (OrderType.STOP, OrderType.STOP_LIMIT) or cover
        if needs_price != (price is not None):
            errors["price"] = [f"A {order_type} order {'needs a' if needs_price else 'takes no'} price."]
        if needs_stop != (stop_price is not None):
            kind = "cover order (variety co)" if cover else f"{order_type} order"
            errors["stop_price"] = [f"A {kind} {'needs a' if needs_stop else 'takes no'} stop_price."]
        if cover and not errors:
            errors.update(_cover_errors(attrs["side"], price, stop_price, symbol=instrument.symbol))
        if errors:
            raise serializers.ValidationError(errors)
        minimum = instrument_minimum_errors(instrument, qty=attrs["qty"], price=price, reduce_only=attrs.get("reduce_only", False))
        if minimum:
            raise serializers.ValidationError(minimum)
        client_order_id = attrs.get("client_order_id") or None
        return OrderSpec(
            symbol=attrs["symbol"],
            side=attrs["side"],
            order_type=order_type,
            qty=attrs["qty"],
            price=price,
            stop_price=stop_price,
            time_in_force=time_in_force,
            strategy_id=attrs.get("strategy_id") or "",
            position_id=attrs.get("position_id"),
            reduce_only=attrs.get("reduce_only", False),
            client_order_id=client_order_id or new_client_order_id(),
            instrument=instrument,
            client_named_id=client_order_id is not None,
            extra=extra,
        )


def _cover_errors(side: str, price: Decimal | None, stop_price: Decimal | None, *, symbol: str) -> dict[str, list[str]]:
    """A cover order's stop-loss trigger (``stop_price``) stands on the losing
    side of its entry: below it for a buy (its leg sells), above it for a
    sell. The entry is the limit price, else the last price (when known: Kite
    checks the market order's trigger range itself)."""
    entry, what = price, "price"
    if entry is None:
        quote = quote_get(symbol)
        entry, what = (quote.last if quote is not None else None), "last price"
    if entry is None or stop_price is None:
        return {}
    if side == Side.BUY and stop_price >= entry:
        return {"stop_price": [f"A buy cover order's stop-loss trigger must be below its {what} {decimal_str(entry)}."]}
    if side == Side.SELL and stop_price <= entry:
        return {"stop_price": [f"A sell cover order's stop-loss trigger must be above its {what} {decimal_str(entry)}."]}
    return {}


def _extra_errors(extra: Mapping[str, Any], order_type: str, time_in_force: str, qty: Decimal) -> dict[str, list[ErrorDetail]]:
    """The broker-specific fields' rules among themselves: iceberg legs and
    leg quantity go with (and are needed by) the iceberg variety, their
    product covering the order; a TTL is a day order's; a cover order is an
    intraday (MIS, the product it gets when none is named) market or limit
    day order."""
    errors: dict[str, list[ErrorDetail]] = {}
    if extra.get("variety") == COVER:
        if extra.get("product", COVER_PRODUCT) != COVER_PRODUCT:
            errors["product"] = _refused(f"A cover order (variety co) is intraday: product {COVER_PRODUCT}.")
        if order_type not in (OrderType.MARKET, OrderType.LIMIT):
            errors["order_type"] = _refused("A cover order (variety co) is a market or limit order; its stop_price is the stop-loss leg's.")
        if time_in_force != TimeInForce.DAY or "validity_ttl" in extra:
            errors["time_in_force"] = _refused("A cover order (variety co) is a day order.")
    iceberg = extra.get("variety") == "iceberg"
    for name in ("iceberg_legs", "iceberg_quantity"):
        if iceberg and name not in extra:
            errors[name] = _refused("An iceberg order needs iceberg_legs and iceberg_quantity.")
        elif not iceberg and name in extra:
            errors[name] = _refused("Only an iceberg order (variety iceberg) takes this.")
    if iceberg and not errors and extra["iceberg_legs"] * extra["iceberg_quantity"] < qty:
        errors["iceberg_quantity"] = _refused("iceberg_legs x iceberg_quantity must cover qty.")
    if iceberg and order_type == OrderType.MARKET:
        errors["order_type"] = _refused("An iceberg order is a limit or stop-limit order.")
    if "validity_ttl" in extra and time_in_force != TimeInForce.DAY:
        errors["validity_ttl"] = _refused("A TTL is a day order's (time_in_force day).")
    if "validity_ttl" in extra and order_type not in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        errors["validity_ttl"] = _refused("A TTL order is a limit or stop-limit order.")
    return errors


class _OrderRefFields(PayloadSpec):
    order_id = IdField(required=False, allow_null=True)
    client_order_id = TextField(max_length=36, required=False, allow_null=True, help_text="Instead of order_id.")

    def order_ref(self, attrs: dict[str, Any]) -> dict[str, Any]:
        order_id = attrs.get("order_id", self.context.get("order_id"))
        client_order_id = attrs.get("client_order_id") or None
        if order_id is None and client_order_id is None:
            raise serializers.ValidationError({"order_id": ["Name the order by order_id or client_order_id."]})
        return {"order_id": order_id, "client_order_id": client_order_id}


class CancelOrderPayload(_OrderRefFields):
    """A ``cancel_order`` payload: the order by ``order_id`` or ``client_order_id``."""

    def validate(self, attrs: dict[str, Any]) -> OrderRef:
        return OrderRef(**self.order_ref(attrs))


class OrderChangeBody(PayloadSpec):
    """The new values of ``change_order`` (at least one; decimals as strings).
    The body of ``POST /orders/{id}/change``: the order comes from the path."""

    qty = PlainDecimalField(required=False, allow_null=True)
    price = PlainDecimalField(required=False, allow_null=True)
    stop_price = PlainDecimalField(required=False, allow_null=True)

    def order_ref(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"order_id": self.context["order_id"], "client_order_id": None}

    def validate(self, attrs: dict[str, Any]) -> ChangeSpec:
        ref = self.order_ref(attrs)
        changes = {name: attrs.get(name) for name in ("qty", "price", "stop_price")}
        if all(value is None for value in changes.values()):
            raise serializers.ValidationError({"qty": ["Give a new qty, price or stop_price."]})
        return ChangeSpec(**ref, **changes)


class ChangeOrderPayload(_OrderRefFields, OrderChangeBody):
    """A ``change_order`` payload: the order by ``order_id`` or
    ``client_order_id``, and at least one new value."""


class ClosePositionPayload(PayloadSpec):
    """A ``close_position`` payload."""

    position_id = IdField()

    def validate(self, attrs: dict[str, Any]) -> ClosePositionSpec:
        return ClosePositionSpec(**attrs)


class CloseByPayload(PayloadSpec):
    """A ``close_by`` payload: two opposite positions of one symbol."""

    position_id_a = IdField()
    position_id_b = IdField()

    def validate(self, attrs: dict[str, Any]) -> CloseBySpec:
        return CloseBySpec(**attrs)


class ReassignPayload(PayloadSpec):
    """A ``reassign`` payload: deals to move to another strategy and/or position."""

    deal_ids = serializers.ListField(child=IdField(), min_length=1, max_length=MAX_BATCH)
    target_strategy_id = TextField(max_length=64, accept_int=True, required=False, allow_blank=True, allow_null=True)
    target_position_id = IdField(required=False, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> ReassignSpec:
        return ReassignSpec(
            deal_ids=tuple(attrs["deal_ids"]),
            target_strategy_id=attrs.get("target_strategy_id") or "",
            target_position_id=attrs.get("target_position_id"),
        )


@dataclass(frozen=True)
class AccountReassign:
    account_id: int
    spec: ReassignSpec


class ReassignBody(ReassignPayload):
    """The body of ``POST /oms/reassign``: the payload and its account."""

    account_id = IdField()

    def validate(self, attrs: dict[str, Any]) -> AccountReassign:  # type: ignore[override]
        return AccountReassign(account_id=attrs.pop("account_id"), spec=super().validate(attrs))


class EmptyPayload(PayloadSpec):
    """``{}`` or no body (``cancel_all``, ``flatten_all``, a cancel by path)."""

    def validate(self, attrs: dict[str, Any]) -> NoPayload:
        return NoPayload()


class BatchOrdersPayload(PayloadSpec):
    """``POST /accounts/{id}/batch-orders``: send_order payloads, validated
    whole (one invalid: none written; errors name ``orders[i].field``)."""

    orders = SendOrderPayload(many=True, min_length=1, max_length=MAX_BATCH)  # type: ignore[call-arg]

    def validate(self, attrs: dict[str, Any]) -> list[OrderSpec]:
        return list(attrs["orders"])


#: The spec of each command's payload (the handler table in
#: ``oms.services.commands`` pairs each with its service).
PAYLOAD_SPECS: dict[str, type[PayloadSpec]] = {
    "send_order": SendOrderPayload,
    "cancel_order": CancelOrderPayload,
    "change_order": ChangeOrderPayload,
    "close_position": ClosePositionPayload,
    "close_by": CloseByPayload,
    "reassign": ReassignPayload,
    "cancel_all": EmptyPayload,
    "flatten_all": EmptyPayload,
}


# --- the envelope ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandEnvelope:
    """A parsed command: ``spec`` is its payload's typed value once parsed
    against the account (``CommandSpec`` with ``parse_payload`` in context)."""

    account_id: int
    command: str
    request_id: str | int | None
    payload: dict[str, Any]
    spec: Any = None


class CommandSpec(PayloadSpec):
    """A command on the wire: ``POST /oms/commands`` (an object, or an array of
    one account's) and the WebSocket ``command`` op."""

    account_id = IdField()
    command = ChoiceField(choices=list(PAYLOAD_SPECS))
    request_id = RequestIdField(required=False, allow_null=True, help_text="Echoed in the result.")
    payload = serializers.DictField(required=False, allow_null=True, help_text="The command's payload.")

    def validate(self, attrs: dict[str, Any]) -> CommandEnvelope:
        name, payload = attrs["command"], attrs.get("payload") or {}
        spec = None
        if self.context.get("parse_payload"):
            serializer = PAYLOAD_SPECS[name](data=payload, context=self.context)
            if not serializer.is_valid():
                raise serializers.ValidationError({"payload": serializer.errors})
            spec = serializer.validated_data
        return CommandEnvelope(attrs["account_id"], name, attrs.get("request_id"), payload, spec)
