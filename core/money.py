"""Currencies and their minor units: the one place money is rounded.

Amounts are computed with ``Decimal`` at full precision (average cost as
total cost and quantity, realized P&L per deal) and quantized only at the
edge — on the wire, in a ledger balance — to the currency's minor units, half
away from zero (``ROUND_HALF_UP``), as brokerage statements round.

Fiat currencies follow ISO 4217 (USD 2, KRW 0, INR 2, JPY 0...). Anything the
table does not name is taken for a coin or token (USDT, BTC, ETH...) and gets
``COIN_MINOR_UNITS`` (8, the satoshi; what exchanges show for balances), so an
unknown currency never loses an amount a venue reports.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

COIN_MINOR_UNITS = 8

# ISO 4217 minor units of the fiat currencies the brokers trade in.
FIAT_MINOR_UNITS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "CAD": 2,
    "AUD": 2,
    "NZD": 2,
    "HKD": 2,
    "SGD": 2,
    "CNY": 2,
    "INR": 2,
    "KRW": 0,
    "JPY": 0,
    "VND": 0,
    "IDR": 2,
    "TWD": 2,
    "THB": 2,
    "BRL": 2,
    "MXN": 2,
    "ZAR": 2,
    "TRY": 2,
    "AED": 2,
    "SAR": 2,
    "KWD": 3,
    "BHD": 3,
}


def minor_units(currency: str) -> int:
    """Digits after the point of ``currency`` (``KRW`` 0, ``USD`` 2, coins 8)."""
    return FIAT_MINOR_UNITS.get(currency.upper(), COIN_MINOR_UNITS)


def is_fiat(currency: str) -> bool:
    return currency.upper() in FIAT_MINOR_UNITS


def money_quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def money_quantize(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded to ``currency``'s minor units, half away from zero."""
    return amount.quantize(money_quantum(currency), rounding=ROUND_HALF_UP)


def money_quantize_or_none(amount: Decimal | None, currency: str) -> Decimal | None:
    return None if amount is None else money_quantize(amount, currency)
