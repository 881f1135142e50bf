"""Order-book depth metrics from a quote's top of book, or up to 5 levels when
a feed has depth.

``liquidity_score`` (0-100) = 100 * H_s / (H_s + spread_bps) * D / (D + H_d),
with D the smaller side's total quoted size over the levels given,
``H_s`` = ``SPREAD_HALF_BPS`` (the spread, in bps of the mid, that halves the
score) and ``H_d`` = ``DEPTH_HALF_SIZE`` (the size that halves it): a tight
spread and depth on both sides score near 100, a wide or thin book near 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SPREAD_HALF_BPS = 10.0
DEPTH_HALF_SIZE = 100.0
MAX_LEVELS = 5

Level = tuple[float, float]  # (price, size)


@dataclass(frozen=True, slots=True)
class DepthMetrics:
    mid: float | None
    spread: float | None
    spread_bps: float | None
    microprice: float | None
    depth_imbalance: float | None  # (bid size - ask size) / total, over the levels; +1 all bids
    liquidity_score: float | None
    levels: int  # levels per side used
    reason: str | None = None  # why the fields are null


def _clean(levels: Sequence[Level]) -> list[Level]:
    return [(p, s) for p, s in levels[:MAX_LEVELS] if p > 0 and s >= 0]


def depth_metrics(*, bids: Sequence[Level], asks: Sequence[Level]) -> DepthMetrics:
    """``bids`` best first (highest price), ``asks`` best first (lowest price)."""
    bids, asks = _clean(bids), _clean(asks)
    if not bids or not asks:
        return DepthMetrics(None, None, None, None, None, None, 0, reason="no_two_sided_quote")
    (bid, bid_size), (ask, ask_size) = bids[0], asks[0]
    if bid > ask:
        return DepthMetrics(None, None, None, None, None, None, 0, reason="crossed_book")
    mid = (bid + ask) / 2.0
    spread = ask - bid
    spread_bps = spread / mid * 10_000.0
    top = bid_size + ask_size
    # The microprice leans to the side with less size: that side is about to be taken out.
    microprice = (ask * bid_size + bid * ask_size) / top if top > 0 else mid
    levels = min(len(bids), len(asks))
    bid_depth = sum(s for _, s in bids[:levels])
    ask_depth = sum(s for _, s in asks[:levels])
    total = bid_depth + ask_depth
    imbalance = (bid_depth - ask_depth) / total if total > 0 else 0.0
    thin = min(bid_depth, ask_depth)
    score = 100.0 * SPREAD_HALF_BPS / (SPREAD_HALF_BPS + spread_bps) * thin / (thin + DEPTH_HALF_SIZE)
    return DepthMetrics(mid, spread, spread_bps, microprice, imbalance, score, levels)
