"""What the models need of an instrument: the model, rate and dividend yield
of its underlying, the expiry moment, and numbers safe for JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings

from marketdata.analytics.pricing import Model
from marketdata.models import Instrument, InstrumentType
from marketdata.sessions import contract_expiry


@dataclass(frozen=True)
class ModelParams:
    model: Model  # Black-76 on a future, Black-Scholes on anything else
    rate: float
    dividend_yield: float


def model_params(underlying: Instrument) -> ModelParams:
    """The underlying's own rate and yield (``Instrument.risk_free_rate``,
    ``dividend_yield``), else the settings' ``FO_RISK_FREE_RATE`` and ``FO_DIVIDEND_YIELD``."""
    rate = underlying.risk_free_rate if underlying.risk_free_rate is not None else settings.FO_RISK_FREE_RATE
    dividend = underlying.dividend_yield if underlying.dividend_yield is not None else settings.FO_DIVIDEND_YIELD
    is_future = underlying.type == InstrumentType.FUTURE
    return ModelParams(model="black76" if is_future else "bs", rate=float(rate), dividend_yield=0.0 if is_future else float(dividend))


def expiry_moment(instrument: Instrument) -> int:
    """Its session's close on its expiry date in its timezone (``marketdata.sessions``, the OMS's rule)."""
    assert instrument.expiry is not None
    return contract_expiry(instrument.expiry, instrument.timezone, instrument.session)


def num(value: Any, digits: int | None = None) -> float | None:
    """A finite float for JSON (rounded to ``digits`` places when given), else None."""
    if value is None:
        return None
    x = float(value)
    if not math.isfinite(x):
        return None
    return round(x, digits) if digits is not None else x


def positive(value: Decimal | None) -> float | None:
    return float(value) if value is not None and value > 0 else None
