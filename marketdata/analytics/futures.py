"""Futures analytics: price/open-interest buildup signals and rollover metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Signal = Literal["long_buildup", "short_buildup", "long_unwinding", "short_covering", "neutral"]
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True, slots=True)
class IntervalSignal:
    index: int  # the interval ending at point ``index`` (from point index - 1)
    price_change: float
    price_change_percent: float | None
    oi_change: float
    oi_change_percent: float | None
    signal: Signal


def _percent(change: float, base: float) -> float | None:
    return change / base * 100.0 if base else None


def classify(price_change_percent: float | None, oi_change_percent: float | None, threshold_percent: float) -> Signal:
    """Price up + OI up: long buildup; price down + OI up: short buildup; price
    down + OI down: long unwinding; price up + OI down: short covering. A move
    of either under ``threshold_percent`` (in absolute value) is neutral."""
    if price_change_percent is None or oi_change_percent is None:
        return "neutral"
    if (
        abs(price_change_percent) < threshold_percent
        or abs(oi_change_percent) < threshold_percent
        or not price_change_percent
        or not oi_change_percent
    ):
        return "neutral"
    if oi_change_percent > 0:
        return "long_buildup" if price_change_percent > 0 else "short_buildup"
    return "short_covering" if price_change_percent > 0 else "long_unwinding"


def position_signals(*, prices: Sequence[float], open_interest: Sequence[float], threshold_percent: float) -> list[IntervalSignal]:
    """One signal per consecutive pair of points (closes and OI at the end of each interval)."""
    out = []
    for i in range(1, min(len(prices), len(open_interest))):
        dp = prices[i] - prices[i - 1]
        doi = open_interest[i] - open_interest[i - 1]
        pp, op = _percent(dp, prices[i - 1]), _percent(doi, open_interest[i - 1])
        out.append(IntervalSignal(i, dp, pp, doi, op, classify(pp, op, threshold_percent)))
    return out


@dataclass(frozen=True, slots=True)
class Contract:
    expiry_ts: float  # the expiry moment, unix seconds
    price: float | None
    open_interest: float


@dataclass(frozen=True, slots=True)
class ContractMetrics:
    open_interest: float
    oi_share_percent: float | None
    days_to_expiry: float
    basis: float | None  # futures - spot
    basis_percent: float | None
    annualised_basis_percent: float | None  # basis % scaled to a year, ACT/365 (simple)
    cost_of_carry: float | None  # ln(F/S) / T: the continuous annual carry


@dataclass(frozen=True, slots=True)
class Rollover:
    contracts: list[ContractMetrics]  # in expiry order
    rollover_percent: float | None  # next month's share of near + next OI
    calendar_spread: float | None  # next - near price


def rollover_metrics(*, contracts: Sequence[Contract], spot: float | None, now: float) -> Rollover:
    """``contracts`` not yet expired, in expiry order."""
    total = sum(c.open_interest for c in contracts)
    rows = []
    for c in contracts:
        days = max(c.expiry_ts - now, 0.0) / SECONDS_PER_DAY
        basis = basis_pct = annual = carry = None
        if c.price is not None and spot:
            basis = c.price - spot
            basis_pct = basis / spot * 100.0
            if days > 0:
                annual = basis_pct * 365.0 / days
                carry = math.log(c.price / spot) / (days / 365.0) if c.price > 0 else None
        rows.append(
            ContractMetrics(c.open_interest, c.open_interest / total * 100.0 if total > 0 else None, days, basis, basis_pct, annual, carry)
        )
    rollover = spread = None
    if len(contracts) >= 2:
        near, nxt = contracts[0], contracts[1]
        pair = near.open_interest + nxt.open_interest
        rollover = nxt.open_interest / pair * 100.0 if pair > 0 else None
        if near.price is not None and nxt.price is not None:
            spread = nxt.price - near.price
    return Rollover(rows, rollover, spread)
