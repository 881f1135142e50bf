"""A CCXT exchange's OHLCV history into the terminal's bars (the shared
``bars_upsert``, as Kite's ``import_kite_history``): ccxt's timeframes 1m,
5m, 15m, 30m, 1h, 4h, 1d, 1w and 1M map to the bar resolutions 1, 5, 15,
30, 60, 240, 1D, 1W and 1M. Each request is paced within the exchange's
``rateLimit`` on the account's pacing bucket (shared with the feed and the
pass-through); each page is stored as it comes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from brokers.base import BrokerRejected
from brokers.ccxt.adapter import CcxtBroker
from brokers.ccxt.feed import account_pacer
from brokers.models import BrokerAccount
from marketdata.models import Instrument
from marketdata.services import UpsertResult, bars_upsert
from marketdata.venues import symbol_split

RESOLUTIONS = {"1m": "1", "5m": "5", "15m": "15", "30m": "30", "1h": "60", "4h": "240", "1d": "1D", "1w": "1W", "1M": "1M"}


def ccxt_history_import(
    *,
    account: BrokerAccount,
    symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
    progress: Callable[[UpsertResult], None] | None = None,
) -> UpsertResult:
    """Fetch ``symbol``'s finished candles opening in [start, end) from the
    account's exchange and store them as bars (replacing those stored at the
    same times). ``BrokerRejected`` for a timeframe without a resolution here
    or the exchange, or a symbol of another venue or without an instrument."""
    resolution = RESOLUTIONS.get(timeframe)
    if resolution is None:
        raise BrokerRejected(f"timeframe is one of {', '.join(RESOLUTIONS)}.")
    instrument = Instrument.objects.filter(symbol=symbol).first()
    if instrument is None:
        venue = (symbol_split(symbol) or ("VENUE", ""))[0]
        raise BrokerRejected(f"No instrument {symbol[:64]}: import the exchange's markets first (import_ccxt_markets, venue {venue}).")
    broker = CcxtBroker(account)
    total = UpsertResult()
    for page in broker.history(symbol, timeframe, start=start, end=end, before_call=account_pacer(broker)):
        stored = bars_upsert(instrument=instrument, resolution=resolution, bars=page)
        total = UpsertResult(inserted=total.inserted + stored.inserted, updated=total.updated + stored.updated)
        if progress is not None:
            progress(total)
    return total
