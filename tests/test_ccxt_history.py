"""A CCXT exchange's OHLCV history into bars (``import_ccxt_history``):
ccxt's real fetch_ohlcv against the fake's Binance klines, a page of 1000
candles per call, each call paced, the forming candle left out."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from brokers.ccxt import history
from brokers.ccxt.history import ccxt_history_import
from marketdata.models import Bar
from tests.ccxt_support import PRICE, Ccxt, ccxt_running

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def spot(settings, alice) -> Iterator[Ccxt]:
    with ccxt_running(settings, alice, "spot") as running:
        yield running


def _expected(start: float, step: int, end: float | None = None) -> list[int]:
    """Open times of the finished candles from ``start`` to ``end`` (now)."""
    return list(range(math.ceil(start / step) * step, min(int(time.time()) // step * step, math.ceil(end or time.time())), step))


def test_minutes_are_backfilled_in_paced_pages_and_a_rerun_replaces_them(spot, monkeypatch):
    paced = []
    monkeypatch.setattr(history, "account_pacer", lambda broker: lambda: paced.append(broker.account_id))
    end = timezone.now() - timedelta(minutes=10)  # a past end: the candles asked for are all finished
    start = end - timedelta(days=3)
    result = ccxt_history_import(account=spot.account, symbol=spot.symbol, timeframe="1m", start=start, end=end)
    times = _expected(start.timestamp(), 60, end.timestamp())
    stored = Bar.objects.filter(instrument__symbol=spot.symbol, resolution="1").order_by("time")
    assert (result.inserted, result.updated) == (len(times), 0) and len(times) > 4000
    assert [int(b.time.timestamp()) for b in stored] == times  # every minute once, the forming one left out
    assert {b.close for b in stored} == {PRICE}
    calls = spot.fake.calls["GET /api/v3/klines"]
    assert calls == math.ceil(len(times) / 1000) and len(paced) == calls  # 1000 a call, each paced
    again = ccxt_history_import(account=spot.account, symbol=spot.symbol, timeframe="1m", start=start, end=end)
    assert (again.inserted, again.updated) == (0, len(times))


def test_the_command_stores_days_and_refuses_what_it_cannot_fetch(spot):
    out = io.StringIO()
    call_command("import_ccxt_history", str(spot.account.pk), spot.symbol, "--timeframe", "1d", "--days", "10", stdout=out)
    days = _expected((timezone.now() - timedelta(days=10)).timestamp(), 86400)
    assert f"{len(days)} bars stored, 0 replaced (1d)" in out.getvalue()
    assert Bar.objects.filter(instrument__symbol=spot.symbol, resolution="1D").count() == len(days)
    with pytest.raises(CommandError, match="import_ccxt_markets"):
        call_command("import_ccxt_history", str(spot.account.pk), "BINANCE:DOGE/USDT", stdout=io.StringIO())
    with pytest.raises(CommandError, match="No CCXT account"):
        call_command("import_ccxt_history", "999999", spot.symbol, stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("import_ccxt_history", str(spot.account.pk), spot.symbol, "--timeframe", "3m", stdout=io.StringIO())
