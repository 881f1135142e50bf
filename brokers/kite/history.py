"""Kite's historical candles into the terminal's bars.

``minute``, ``5minute``, ``15minute``, ``30minute``, ``60minute`` and ``day``
map to the bar resolutions 1, 5, 15, 30, 60 and 1D (Kite's 3- and 10-minute
candles have no resolution of their own here); OI is kept. Requests are
paced at ``KITE_RATE_HISTORICAL`` a second per api_key (``KiteBroker.candles``)."""

from __future__ import annotations

from datetime import datetime

from brokers.base import BrokerRejected
from brokers.kite.adapter import KiteBroker
from brokers.models import BrokerAccount
from marketdata.models import Instrument
from marketdata.services import UpsertResult, bars_upsert

RESOLUTIONS = {"minute": "1", "5minute": "5", "15minute": "15", "30minute": "30", "60minute": "60", "day": "1D"}


def kite_history_import(*, account: BrokerAccount, symbol: str, interval: str, start: datetime, end: datetime) -> UpsertResult:
    """Fetch ``symbol``'s candles between ``start`` and ``end`` and store them
    as bars (replacing those stored at the same times). ``BrokerRejected``
    for an unknown interval, or an instrument without Kite's token."""
    resolution = RESOLUTIONS.get(interval)
    if resolution is None:
        raise BrokerRejected(f"interval is one of {', '.join(RESOLUTIONS)}.")
    instrument = Instrument.objects.filter(symbol=symbol).first()
    token = (instrument.broker_codes or {}).get("kite") if instrument is not None else None
    if instrument is None or isinstance(token, bool) or not str(token or "").isdigit():
        raise BrokerRejected(f"{symbol[:64]} has no Kite instrument token: import Kite's instrument master first.")
    bars = KiteBroker(account).candles(int(str(token)), interval=interval, start=start, end=end, oi=True)
    return bars_upsert(instrument=instrument, resolution=resolution, bars=bars)
