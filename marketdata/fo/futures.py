"""Futures analytics services: buildup/unwinding signals from bars with open
interest, and rollover metrics from the live quotes of an underlying's futures."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
from django.conf import settings

from core.decimals import decimal_str
from core.exceptions import NotFound
from marketdata.analytics.futures import Contract, position_signals, rollover_metrics
from marketdata.fo.params import expiry_moment, num
from marketdata.models import Bar, Instrument, InstrumentType
from marketdata.quotes import quotes_get
from marketdata.selectors import bars_history, instrument_get
from marketdata.sessions import contract_expired


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def live_futures(underlying: Instrument, now: float) -> list[Instrument]:
    """The underlying's active futures not yet expired, nearest expiry first."""
    rows = Instrument.objects.filter(underlying=underlying, type=InstrumentType.FUTURE, active=True, expiry__isnull=False).order_by(
        "expiry"
    )
    return [f for f in rows if not contract_expired(f.expiry, f.timezone, f.session, now)]


def open_interest_series(instrument: Instrument, times: list[int], end: int) -> list[Decimal | None]:
    """The open interest at the end of each bar starting at ``times`` (the last
    stored OI before the next bar's start, ``end`` for the last one)."""
    if not times:
        return []
    rows = list(
        Bar.objects.filter(
            instrument=instrument,
            time__gte=datetime.fromtimestamp(times[0], UTC),
            time__lt=datetime.fromtimestamp(end, UTC),
            open_interest__isnull=False,
        )
        .order_by("time")
        .values_list("time", "open_interest")
    )
    stamps = np.array([int(t.timestamp()) for t, _ in rows], dtype=np.int64)
    bounds = np.array([*times[1:], end], dtype=np.int64)
    last = np.searchsorted(stamps, bounds, side="left") - 1  # the last OI stamped before each bound
    firsts = np.searchsorted(stamps, np.array(times, dtype=np.int64), side="left")
    return [rows[j][1] if j >= first else None for j, first in zip(last.tolist(), firsts.tolist(), strict=True)]


def futures_position_signals(
    *, underlying: str, resolution: str, start: int, end: int, threshold_percent: float | None = None, contract: str | None = None
) -> dict[str, Any]:
    """Per interval of the front-month future (or ``contract``): price and OI
    change and the buildup/unwinding signal; intervals without OI are neutral with a reason."""
    now = time.time()
    base = instrument_get(symbol=underlying)
    if contract:
        future = instrument_get(symbol=contract)
        if future.underlying_id != base.id or future.type != InstrumentType.FUTURE:
            raise NotFound(f"'{contract[:64]}' is not a future on '{base.symbol}'.", code="unknown_contract")
    else:
        live = live_futures(base, now)
        if not live:
            raise NotFound(f"No live futures on '{base.symbol}'.", code="no_futures")
        future = live[0]
    threshold = settings.FO_SIGNAL_THRESHOLD_PERCENT if threshold_percent is None else threshold_percent
    history = bars_history(instrument=future, resolution=resolution, start=start, end=end, convert=Decimal)
    times = [int(t) for t in history.columns[0]]
    closes = list(history.columns[4])
    oi = open_interest_series(future, times, end)
    intervals = []
    known = [i for i, v in enumerate(oi) if v is not None]
    oi_known = [float(v) for v in oi if v is not None]
    signals = {
        s.index: s for s in position_signals(prices=[float(closes[i]) for i in known], open_interest=oi_known, threshold_percent=threshold)
    }
    for n, i in enumerate(known[1:], start=1):
        s = signals[n]
        prev = known[n - 1]
        intervals.append(
            {
                "time": _iso(times[i]),
                "from_time": _iso(times[prev]),
                "close": decimal_str(closes[i]),
                "price_change": decimal_str(closes[i] - closes[prev]),
                "price_change_percent": num(s.price_change_percent, 6),
                "open_interest": decimal_str(oi[i]),
                "oi_change": decimal_str(oi[i] - oi[prev]),  # type: ignore[operator]
                "oi_change_percent": num(s.oi_change_percent, 6),
                "signal": s.signal,
            }
        )
    return {
        "underlying": base.symbol,
        "contract": future.symbol,
        "resolution": resolution,
        "threshold_percent": threshold,
        "bars": len(times),
        "bars_without_open_interest": len(times) - len(known),
        "intervals": intervals,
    }


def futures_rollover_metrics(*, underlying: str, now: float | None = None) -> dict[str, Any]:
    """OI by expiry, the rollover percentage (next month's share of near + next
    OI), the calendar spread, basis, annualised basis and cost of carry, days to expiry."""
    now = now if now is not None else time.time()
    base = instrument_get(symbol=underlying)
    live = live_futures(base, now)
    if not live:
        raise NotFound(f"No live futures on '{base.symbol}'.", code="no_futures")
    quotes = quotes_get([base.symbol, *(f.symbol for f in live)])
    spot_quote = quotes.get(base.symbol)
    spot = float(spot_quote.last) if spot_quote is not None and spot_quote.last > 0 else None
    contracts = []
    for f in live:
        q = quotes.get(f.symbol)
        price = float(q.last) if q is not None and q.last > 0 else None
        contracts.append(
            Contract(expiry_ts=expiry_moment(f), price=price, open_interest=float(q.open_interest or 0) if q is not None else 0.0)
        )
    result = rollover_metrics(contracts=contracts, spot=spot, now=now)
    rows = []
    for f, c, m in zip(live, contracts, result.contracts, strict=True):
        q = quotes.get(f.symbol)
        rows.append(
            {
                "symbol": f.symbol,
                "expiry": f.expiry.isoformat() if f.expiry else None,
                "expiry_time": _iso(c.expiry_ts),
                "days_to_expiry": num(m.days_to_expiry, 6),
                "last": decimal_str(q.last) if q is not None else None,
                "open_interest": decimal_str(q.open_interest) if q is not None else None,
                "oi_share_percent": num(m.oi_share_percent, 6),
                "basis": num(m.basis),
                "basis_percent": num(m.basis_percent, 6),
                "annualised_basis_percent": num(m.annualised_basis_percent, 6),
                "cost_of_carry": num(m.cost_of_carry, 8),
                "reason": None if q is not None else "no_quote",
            }
        )
    return {
        "underlying": base.symbol,
        "spot": decimal_str(spot_quote.last) if spot_quote is not None else None,
        "time": _iso(now),
        "rollover_percent": num(result.rollover_percent, 6),
        "calendar_spread": num(result.calendar_spread),
        "contracts": rows,
    }
