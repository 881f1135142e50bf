"""Option-chain aggregates: ATM strike, moneyness labels, put-call ratios,
max pain, the IV smile and premium/discount to a model price."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from marketdata.analytics.pricing import OptionSide

_LABEL = re.compile(r"^(ATM|ITM([1-9][0-9]?)|OTM([1-9][0-9]?))$")


def atm_index(strikes: Sequence[float], forward: float) -> int:
    """Index of the strike nearest the forward (the lower one on a tie); strikes ascending."""
    values = np.asarray(strikes, dtype=np.float64)
    return int(np.argmin(np.abs(values - forward)))


def moneyness_label(index: int, atm: int, side: OptionSide) -> str:
    """``ATM``, ``ITMn`` or ``OTMn``: n strikes from the ATM one. A call below the ATM strike is in the money, a put above it."""
    steps = index - atm
    if steps == 0:
        return "ATM"
    in_the_money = steps < 0 if side == "call" else steps > 0
    return f"{'ITM' if in_the_money else 'OTM'}{abs(steps)}"


def parse_moneyness(label: str) -> tuple[Literal["ATM", "ITM", "OTM"], int] | None:
    """``ATM`` -> ("ATM", 0), ``ITM3`` -> ("ITM", 3); None when malformed (n is 1-99)."""
    match = _LABEL.match(label.strip().upper())
    if match is None:
        return None
    if match.group(1) == "ATM":
        return "ATM", 0
    return ("ITM", int(match.group(2))) if match.group(2) else ("OTM", int(match.group(3)))


def strike_at_moneyness(count: int, atm: int, side: OptionSide, kind: str, steps: int) -> int | None:
    """Index of the strike at ``kind``/``steps`` from the ATM index; None when the chain has none there."""
    if kind == "ATM":
        return atm
    below = (kind == "ITM") == (side == "call")  # ITM calls and OTM puts sit below the ATM strike
    index = atm - steps if below else atm + steps
    return index if 0 <= index < count else None


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def max_pain(strikes: Sequence[float], call_oi: Sequence[float], put_oi: Sequence[float]) -> float | None:
    """The settlement strike at which option holders' total payout is least
    (writers' pain is most... for holders: 'max pain'); None without open interest."""
    k = np.asarray(strikes, dtype=np.float64)
    calls = np.asarray(call_oi, dtype=np.float64)
    puts = np.asarray(put_oi, dtype=np.float64)
    if k.size == 0 or (calls.sum() + puts.sum()) <= 0:
        return None
    settle = k[:, None]
    payout = (np.maximum(settle - k[None, :], 0.0) * calls[None, :]).sum(axis=1) + (
        np.maximum(k[None, :] - settle, 0.0) * puts[None, :]
    ).sum(axis=1)
    return float(k[int(np.argmin(payout))])


def smile_at(strikes: Sequence[float], ivs: Sequence[float | None], strike: float) -> float | None:
    """The smile linearly interpolated at ``strike`` from the strikes with an IV,
    flat beyond the outermost ones; None when no strike has one."""
    points = sorted((k, v) for k, v in zip(strikes, ivs, strict=True) if v is not None and math.isfinite(v))
    if not points:
        return None
    xs, ys = zip(*points, strict=True)
    return float(np.interp(strike, xs, ys))


@dataclass(frozen=True, slots=True)
class PremiumDiscount:
    model_price: float
    premium: float  # market - model: positive is a premium, negative a discount
    premium_percent: float | None  # of the model price


def premium_discount(*, market_price: float, model_price: float) -> PremiumDiscount:
    return PremiumDiscount(
        model_price=model_price,
        premium=market_price - model_price,
        premium_percent=(market_price - model_price) / model_price * 100.0 if model_price > 0 else None,
    )
