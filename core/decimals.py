"""Decimals on the wire: JSON strings without the database column's padding."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def plain_decimal(value: Decimal) -> Decimal:
    """``100.0000000000`` -> ``100``, ``0.0500000000`` -> ``0.05`` (never ``1E+2``)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def decimal_str(value: Any) -> str | None:
    """``Decimal("10.0000000000")`` -> ``"10"``; ``0E-10`` -> ``"0"``; None stays None."""
    if value is None:
        return None
    return format(plain_decimal(value if isinstance(value, Decimal) else Decimal(str(value))), "f")
