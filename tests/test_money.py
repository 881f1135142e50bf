"""The currency table and the one rounding of money (core.money)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.money import minor_units, money_quantize

D = Decimal


@pytest.mark.parametrize(
    ("currency", "units"), [("USD", 2), ("KRW", 0), ("INR", 2), ("JPY", 0), ("USDT", 8), ("BTC", 8), ("usd", 2), ("KWD", 3)]
)
def test_minor_units_per_currency(currency, units):
    assert minor_units(currency) == units


def test_money_is_rounded_half_away_from_zero_to_the_minor_units():
    assert money_quantize(D("-1.171966"), "USD") == D("-1.17")
    assert money_quantize(D("0.125"), "USD") == D("0.13")
    assert money_quantize(D("-0.125"), "USD") == D("-0.13")
    assert money_quantize(D("50400.5"), "KRW") == D("50401")
    assert money_quantize(D("0.123456789"), "USDT") == D("0.12345679")
    assert str(money_quantize(D("12"), "USD")) == "12.00"
