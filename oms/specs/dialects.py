"""Another broker's order field names, taken by the one ``send_order`` spec
for accounts whose broker speaks them (``Capabilities.order_dialect``).

Kite (the upstream Kite backend's clients send these): ``tradingsymbol`` and
``exchange`` (the symbol ``EXCHANGE:tradingsymbol``, a space written ``_``),
``transaction_type`` BUY/SELL, ``quantity``, ``order_type`` MARKET, LIMIT,
SL (stop_limit), SL-M (stop), ``trigger_price`` (stop_price), ``validity``
DAY, IOC or TTL (a day order with ``validity_ttl`` minutes) and ``tag``
(client_order_id); ``price``, ``product`` and ``variety`` are the spec's own.
Giving one of these and our name for the same thing is refused."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

KITE = "kite"
KITE_ORDER_TYPES = {"MARKET": "market", "LIMIT": "limit", "SL": "stop_limit", "SL-M": "stop"}
KITE_VALIDITIES = {"DAY": "day", "IOC": "ioc", "TTL": "day"}
KITE_SIDES = {"BUY": "buy", "SELL": "sell"}
# Kite's name -> ours.
KITE_NAMES = {
    "transaction_type": "side",
    "quantity": "qty",
    "trigger_price": "stop_price",
    "validity": "time_in_force",
    "tag": "client_order_id",
}


def _kite_to_ours(data: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(data)
    errors: dict[str, list[str]] = {}
    if "tradingsymbol" in out or "exchange" in out:
        exchange, tradingsymbol = out.pop("exchange", None), out.pop("tradingsymbol", None)
        if "symbol" in out:
            errors["tradingsymbol"] = ["Give symbol or tradingsymbol and exchange, not both."]
        elif not isinstance(exchange, str) or not exchange or not isinstance(tradingsymbol, str) or not tradingsymbol:
            errors["exchange" if not isinstance(exchange, str) or not exchange else "tradingsymbol"] = [
                "tradingsymbol and exchange go together, each a non-empty string."
            ]
        elif len(exchange) + len(tradingsymbol) > 63:
            errors["tradingsymbol"] = ["Too long."]
        else:
            out["symbol"] = f"{exchange.strip().upper()}:{tradingsymbol.strip().replace(' ', '_')}"
    for kite, ours in KITE_NAMES.items():
        if kite not in out:
            continue
        value = out.pop(kite)
        if ours in out:
            errors[kite] = [f"Give {kite} or {ours}, not both."]
            continue
        if kite == "transaction_type":
            if value not in KITE_SIDES:
                errors[kite] = ["BUY or SELL."]
                continue
            value = KITE_SIDES[value]
        elif kite == "validity":
            if value not in KITE_VALIDITIES:
                errors[kite] = ["DAY, IOC or TTL."]
                continue
            if value == "TTL" and out.get("validity_ttl") is None:
                errors["validity_ttl"] = ["A TTL order needs validity_ttl (minutes)."]
                continue
            if value != "TTL" and out.get("validity_ttl") is not None:
                errors["validity_ttl"] = ["validity_ttl goes with validity TTL only."]
                continue
            value = KITE_VALIDITIES[value]
        out[ours] = value
    if isinstance(out.get("order_type"), str) and out["order_type"] in KITE_ORDER_TYPES:
        out["order_type"] = KITE_ORDER_TYPES[out["order_type"]]
    if out.get("order_type") in ("market", "stop") and out.get("price") in (0, "0", "0.0", 0.0):
        out.pop("price")  # Kite's clients send price 0 for orders without one
    if out.get("order_type") in ("market", "limit") and out.get("stop_price") in (0, "0", "0.0", 0.0):
        out.pop("stop_price")
    if errors:
        raise serializers.ValidationError(errors)
    return out


def order_payload_translate(dialect: str, data: Any) -> Any:
    """``data`` with the dialect's field names turned into ours (unchanged when
    it is not a mapping or the dialect is none)."""
    if dialect == KITE and isinstance(data, Mapping):
        return _kite_to_ours(data)
    return data
