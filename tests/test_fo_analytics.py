"""The pure chain, depth and futures functions on small hand-computed cases."""

from __future__ import annotations

import pytest

from marketdata.analytics.chain import (
    atm_index,
    max_pain,
    moneyness_label,
    parse_moneyness,
    premium_discount,
    smile_at,
    strike_at_moneyness,
)
from marketdata.analytics.depth import depth_metrics
from marketdata.analytics.futures import Contract, classify, position_signals, rollover_metrics


def test_top_of_book_metrics():
    m = depth_metrics(bids=[(99.0, 300.0)], asks=[(101.0, 100.0)])
    assert (m.mid, m.spread, m.spread_bps, m.levels) == (100.0, 2.0, 200.0, 1)
    assert m.microprice == pytest.approx((101 * 300 + 99 * 100) / 400)  # leans to the thin ask: 100.5
    assert m.depth_imbalance == pytest.approx(0.5)
    assert m.liquidity_score == pytest.approx(100 * 10 / (10 + 200) * 100 / (100 + 100))


def test_five_levels_at_most_and_the_thin_side_bounds_the_score():
    bids = [(99.0 - n, 10.0 * (n + 1)) for n in range(6)]  # 10..60; the sixth level is ignored
    asks = [(100.0 + n, 5.0) for n in range(5)]
    m = depth_metrics(bids=bids, asks=asks)
    assert m.levels == 5
    assert m.depth_imbalance == pytest.approx((150 - 25) / 175)
    spread_bps = 1 / 99.5 * 10_000
    assert m.liquidity_score == pytest.approx(100 * 10 / (10 + spread_bps) * 25 / 125)


def test_one_sided_or_crossed_books_have_no_metrics():
    assert depth_metrics(bids=[], asks=[(1.0, 1.0)]).reason == "no_two_sided_quote"
    crossed = depth_metrics(bids=[(2.0, 1.0)], asks=[(1.0, 1.0)])
    assert crossed.reason == "crossed_book" and crossed.mid is None


def test_max_pain_is_the_cheapest_settlement_for_option_holders():
    # Payouts at 90: 5000, at 100: 2000, at 110: 4000.
    assert max_pain([90, 100, 110], [100, 200, 50], [50, 300, 100]) == 100
    assert max_pain([90, 100], [0, 0], [0, 0]) is None


def test_moneyness_labels_and_selection():
    strikes = [90, 95, 100, 105, 110]
    atm = atm_index(strikes, 101.0)
    assert atm == 2
    assert [moneyness_label(i, atm, "call") for i in range(5)] == ["ITM2", "ITM1", "ATM", "OTM1", "OTM2"]
    assert [moneyness_label(i, atm, "put") for i in range(5)] == ["OTM2", "OTM1", "ATM", "ITM1", "ITM2"]
    assert parse_moneyness("itm3") == ("ITM", 3) and parse_moneyness("ATM") == ("ATM", 0)
    assert parse_moneyness("ITM0") is None and parse_moneyness("OTM") is None and parse_moneyness("X") is None
    assert strike_at_moneyness(5, atm, "put", "ITM", 2) == 4 and strike_at_moneyness(5, atm, "call", "ITM", 2) == 0
    assert strike_at_moneyness(5, atm, "call", "OTM", 3) is None


def test_smile_interpolation_and_premium():
    assert smile_at([90, 100, 110], [0.3, None, 0.2], 105) == pytest.approx(0.225)
    assert smile_at([90, 100], [0.3, 0.2], 80) == pytest.approx(0.3)  # flat beyond the wings
    assert smile_at([90], [None], 90) is None
    pd = premium_discount(market_price=10.5, model_price=10.0)
    assert pd.premium == pytest.approx(0.5) and pd.premium_percent == pytest.approx(5.0)


def test_buildup_signals_and_threshold():
    signals = position_signals(prices=[100, 101, 100, 99, 100], open_interest=[10, 11, 12, 11, 10], threshold_percent=0.5)
    assert [s.signal for s in signals] == ["long_buildup", "short_buildup", "long_unwinding", "short_covering"]
    assert classify(0.5, 1.0, 0.5) == "long_buildup"  # at the threshold counts
    assert classify(0.49, 50.0, 0.5) == "neutral" and classify(2.0, 0.0, 0.0) == "neutral"


def test_rollover_on_a_hand_computed_curve():
    day = 86_400
    result = rollover_metrics(
        contracts=[
            Contract(expiry_ts=10 * day, price=102.0, open_interest=600),
            Contract(expiry_ts=40 * day, price=103.0, open_interest=200),
        ],
        spot=100.0,
        now=0.0,
    )
    assert result.rollover_percent == pytest.approx(25.0) and result.calendar_spread == pytest.approx(1.0)
    near = result.contracts[0]
    assert near.days_to_expiry == 10 and near.basis == pytest.approx(2.0) and near.annualised_basis_percent == pytest.approx(2.0 * 36.5)
    assert near.oi_share_percent == pytest.approx(75.0)
