"""Running the simulator inside Django: the demo instrument set, history
backfill, and the periodic tick step that stores bars and quotes and hands the
changes to the broadcaster and to quote listeners (the paper broker)."""

from __future__ import annotations

import calendar
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from core.decimals import plain_decimal
from marketdata.bars import BarBuilder
from marketdata.feeds.derivatives import RATE
from marketdata.feeds.simulated import SimInstrument, SimulatedFeed
from marketdata.feeds.simulator import Simulator
from marketdata.instrument_cache import instruments_version
from marketdata.models import Bar, Instrument, InstrumentType
from marketdata.services import bars_upsert_many, instrument_upsert, ticks_ingest
from marketdata.sessions import contract_expired, contract_expiry, zone
from marketdata.types import Bar as BarData
from marketdata.types import Quote

logger = logging.getLogger(__name__)

SIMULATOR_SOURCE = "simulator"  # Instrument.quote_source of the simulated instruments
QuoteListener = Callable[[list[Quote]], None]
BarListener = Callable[[list[Quote], list[tuple[str, BarData]]], None]
_quote_listeners: list[QuoteListener] = []
_update_listeners: list[BarListener] = []


def register_quote_listener(listener: QuoteListener) -> None:
    """Called with every batch of fresh quotes (the paper broker matches on them)."""
    if listener not in _quote_listeners:
        _quote_listeners.append(listener)


def register_update_listener(listener: BarListener) -> None:
    """Called with each step's quotes and touched 1-minute bars (the broadcaster)."""
    if listener not in _update_listeners:
        _update_listeners.append(listener)


# --- the instruments -------------------------------------------------------------------


def _last_thursday(year: int, month: int) -> date:
    expiry = date(year, month, calendar.monthrange(year, month)[1])
    while expiry.weekday() != 3:
        expiry -= timedelta(days=1)
    return expiry


def _month_expiry(now: float, months_ahead: int, tz_name: str = "UTC", session: str = "24x7") -> date:
    """The monthly expiry (last Thursday) ``months_ahead`` after the next one
    still to come: 0 is the nearest contract not expired at ``now``, 1 the one after."""
    today = datetime.fromtimestamp(now, zone(tz_name)).date()
    # Once this month's contract has expired, every month shifts by one;
    # shifting only the front month would make months 0 and 1 the same contract.
    skip = 1 if contract_expired(_last_thursday(today.year, today.month), tz_name, session, now) else 0
    year, month = today.year, today.month + months_ahead + skip
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return _last_thursday(year, month)


def sim_instruments() -> list[SimInstrument]:
    """Plain simulator specs of every active instrument that has sim params
    and takes its quotes from the simulator (a broker feed's instrument is
    never simulated: each instrument has one quote source)."""
    rows = Instrument.objects.filter(active=True, quote_source=SIMULATOR_SOURCE).exclude(sim_params={}).select_related("underlying")
    out = []
    for inst in rows:
        params: dict[str, Any] = inst.sim_params
        out.append(
            SimInstrument(
                symbol=inst.symbol,
                type=inst.type,
                tick_size=plain_decimal(inst.tick_size),
                session=inst.session,
                timezone=inst.timezone,
                price=params.get("price"),
                volatility=float(params.get("volatility", 0.3)),
                volume_per_second=float(params.get("volume_per_second", 5.0)),
                underlying=inst.underlying.symbol if inst.underlying is not None else None,
                expiry_ts=contract_expiry(inst.expiry, inst.timezone, inst.session) if inst.expiry else None,
                strike=float(inst.strike) if inst.strike is not None else None,
                call=inst.option_type != "put",
                open_interest=params.get("open_interest"),
                seed_name=str(params.get("seed_symbol", "")),
            )
        )
    return out


DEMO_BASES: list[dict[str, Any]] = [
    dict(symbol="AAPL", description="Apple Inc. (simulated)", exchange="NASDAQ", type="stock", currency="USD", tick_size=Decimal("0.01"),
         timezone="America/New_York", broker_codes={"paper": "AAPL"}, sim_params={"price": 190.0, "volatility": 0.28, "volume_per_second": 40}),
    dict(symbol="MSFT", description="Microsoft Corp. (simulated)", exchange="NASDAQ", type="stock", currency="USD", tick_size=Decimal("0.01"),
         timezone="America/New_York", broker_codes={"paper": "MSFT"}, sim_params={"price": 420.0, "volatility": 0.25, "volume_per_second": 25}),
    dict(symbol="NSE:INFY", description="Infosys Ltd (simulated)", exchange="NSE", type="stock", currency="INR", tick_size=Decimal("0.05"),
         timezone="Asia/Kolkata", broker_codes={"kite": "NSE:INFY"}, sim_params={"price": 1500.0, "volatility": 0.3, "volume_per_second": 60}),
    dict(symbol="005930", description="Samsung Electronics (simulated)", exchange="KRX", type="stock", currency="KRW", tick_size=Decimal("100"),
         timezone="Asia/Seoul", broker_codes={"kis": "005930"}, sim_params={"price": 70000.0, "volatility": 0.3, "volume_per_second": 80}),
    dict(symbol="DEMO:IDX", description="Demo index (simulated)", exchange="DEMO", type="index", currency="USD", tick_size=Decimal("0.05"),
         timezone="UTC", sim_params={"price": 5000.0, "volatility": 0.18, "volume_per_second": 0},
         risk_free_rate=Decimal(str(RATE)), dividend_yield=Decimal(0)),  # the rate its simulated options are priced at
    dict(symbol="BTC/USDT", description="Bitcoin / Tether (simulated)", exchange="SIMEX", type="crypto", currency="USDT", tick_size=Decimal("0.1"),
         lot_size=Decimal("0.0001"), timezone="UTC", broker_codes={"ccxt": "BTC/USDT"}, sim_params={"price": 60000.0, "volatility": 0.6, "volume_per_second": 3}),
    dict(symbol="ETH/USDT", description="Ether / Tether (simulated)", exchange="SIMEX", type="crypto", currency="USDT", tick_size=Decimal("0.01"),
         lot_size=Decimal("0.001"), timezone="UTC", broker_codes={"ccxt": "ETH/USDT"}, sim_params={"price": 3000.0, "volatility": 0.7, "volume_per_second": 8}),
]  # fmt: skip

# FX rates are instruments like any other: ``BASE/QUOTE`` priced in QUOTE
# (``USD/KRW`` = KRW per dollar), read by ``marketdata.fx``. USDT is its own
# currency, quoted against the dollar with a tiny volatility.
DEMO_FX: list[dict[str, Any]] = [
    dict(symbol="USD/KRW", description="US dollar / Korean won (simulated)", exchange="FX", type="fx", currency="KRW", tick_size=Decimal("0.01"),
         timezone="UTC", sim_params={"price": 1380.0, "volatility": 0.08, "volume_per_second": 50}),
    dict(symbol="USD/INR", description="US dollar / Indian rupee (simulated)", exchange="FX", type="fx", currency="INR", tick_size=Decimal("0.0001"),
         timezone="UTC", sim_params={"price": 83.0, "volatility": 0.05, "volume_per_second": 50}),
    dict(symbol="USDT/USD", description="Tether / US dollar (simulated)", exchange="FX", type="fx", currency="USD", tick_size=Decimal("0.0001"),
         timezone="UTC", sim_params={"price": 1.0, "volatility": 0.005, "volume_per_second": 50}),
    dict(symbol="EUR/USD", description="Euro / US dollar (simulated)", exchange="FX", type="fx", currency="USD", tick_size=Decimal("0.00001"),
         timezone="UTC", sim_params={"price": 1.08, "volatility": 0.07, "volume_per_second": 50}),
]  # fmt: skip

OPTION_STRIKES_EACH_SIDE = 5
OPTION_STRIKE_STEP = 50


def demo_instruments_ensure(*, now: float | None = None) -> list[Instrument]:
    """Create the demo set once: stocks, an index with three futures and an
    option chain around the index's current price, two crypto pairs and the
    FX rates. A database seeded before the FX rates existed gets them added."""
    if Instrument.objects.exists():
        return demo_fx_ensure()
    now = now if now is not None else time.time()
    created: list[Instrument] = []
    with transaction.atomic():
        for spec in DEMO_BASES + DEMO_FX:
            created.append(instrument_upsert(**{**spec, "session": "24x7"}))
        index = next(i for i in created if i.symbol == "DEMO:IDX")
        for n in range(3):
            expiry = _month_expiry(now, n)
            created.append(
                instrument_upsert(
                    symbol=f"DEMO:IDX-F{expiry:%y%m}",
                    description=f"Demo index future {expiry:%b %Y} (simulated)",
                    exchange="DEMO",
                    type=InstrumentType.FUTURE,
                    tick_size=Decimal("0.05"),
                    multiplier=Decimal(50),
                    expiry=expiry,
                    underlying=index,
                    sim_params={"open_interest": 120_000 // (n + 1)},
                )
            )
        feed = SimulatedFeed(sim_instruments(), settings.SIMULATOR_SEED)
        spot = feed.sim.price(feed.specs["DEMO:IDX"], now)
        atm = int(spot / OPTION_STRIKE_STEP) * OPTION_STRIKE_STEP
        expiry = _month_expiry(now, 0)
        for k in range(-OPTION_STRIKES_EACH_SIDE, OPTION_STRIKES_EACH_SIDE + 1):
            strike = atm + k * OPTION_STRIKE_STEP
            for option_type in ("call", "put"):
                created.append(
                    instrument_upsert(
                        symbol=f"DEMO:IDX-{expiry:%y%m}-{option_type[0].upper()}{strike}",
                        description=f"Demo index {expiry:%d %b %Y} {strike} {option_type} (simulated)",
                        exchange="DEMO",
                        type=InstrumentType.OPTION,
                        tick_size=Decimal("0.05"),
                        multiplier=Decimal(50),
                        expiry=expiry,
                        strike=Decimal(strike),
                        option_type=option_type,
                        underlying=index,
                        sim_params={"volatility": 0.2, "open_interest": 8_000 - abs(k) * 600},
                    )
                )
    return created


def demo_fx_ensure() -> list[Instrument]:
    """Create the demo FX rates that do not exist yet (an existing one, even
    deactivated by staff, is left as it is)."""
    existing = set(Instrument.objects.filter(symbol__in=[spec["symbol"] for spec in DEMO_FX]).values_list("symbol", flat=True))
    with transaction.atomic():
        return [instrument_upsert(**{**spec, "session": "24x7"}) for spec in DEMO_FX if spec["symbol"] not in existing]


# --- history -----------------------------------------------------------------------------


def simulator_backfill(*, feed: SimulatedFeed, until: float, days: int, option_days: int = 1) -> int:
    """Store the 1-minute bars the simulator would have produced up to the
    minute before ``until`` and missing since the last stored bar (or ``days``
    back). Deterministic, so safe to run again: it upserts."""
    end = int(until) - int(until) % 60
    ids = dict(Instrument.objects.filter(symbol__in=feed.symbols()).values_list("symbol", "id"))
    total = 0
    for symbol in feed.symbols():
        inst = feed.instruments[symbol]
        horizon = option_days if inst.type == InstrumentType.OPTION else days
        start = end - horizon * 86_400
        last = Bar.objects.filter(instrument_id=ids[symbol], resolution="1").order_by("-time").values_list("time", flat=True).first()
        if last is not None:
            start = max(start, int(last.timestamp()) + 60)
        chunk_start = start
        while chunk_start < end:
            chunk_end = min(end, chunk_start + 86_400)
            rows = feed.minute_bars(symbol, chunk_start, chunk_end)
            bars_upsert_many(
                resolution="1",
                bars=[(ids[symbol], BarData(time=t, open=o, high=h, low=lo, close=c, volume=Decimal(v))) for t, o, h, lo, c, v in rows],
            )
            total += len(rows)
            chunk_start = chunk_end
    return total


# --- the live step -------------------------------------------------------------------------


@dataclass
class SimulatorRuntime:
    feed: SimulatedFeed
    builder: BarBuilder = field(default_factory=BarBuilder)
    instrument_ids: dict[str, int] = field(default_factory=dict)
    loaded_at: float = 0.0
    steps: int = 0
    instruments_version: int = -1


_runtime: SimulatorRuntime | None = None
_runtime_lock = threading.Lock()
RELOAD_INSTRUMENTS_EVERY = 60.0


def _runtime_get(now: float) -> SimulatorRuntime:
    global _runtime
    with _runtime_lock:
        version = instruments_version()
        # An instrument written (renamed, deactivated, moved aside for a
        # broker's): reload at once, so no tick is stored under a name that
        # now belongs to another instrument.
        if _runtime is None or now - _runtime.loaded_at > RELOAD_INSTRUMENTS_EVERY or version != _runtime.instruments_version:
            feed = SimulatedFeed(sim_instruments(), settings.SIMULATOR_SEED)
            if _runtime is not None:
                # Keep where each symbol's ticks stopped and the open bars.
                feed.last_second.update(_runtime.feed.last_second)
                builder = _runtime.builder
            else:
                # A fresh process: fill the gap since the last stored bar with
                # the bars the simulator would have made, then tick on from the
                # start of the current minute so its bar is built whole.
                simulator_backfill(feed=feed, until=now, days=settings.SIMULATOR_HISTORY_DAYS)
                minute = int(now) - int(now) % 60
                feed.last_second.update({symbol: minute - 1 for symbol in feed.symbols()})
                builder = BarBuilder()
            ids = dict(Instrument.objects.filter(symbol__in=feed.symbols()).values_list("symbol", "id"))
            _runtime = SimulatorRuntime(feed=feed, builder=builder, instrument_ids=ids, loaded_at=now, instruments_version=version)
        return _runtime


def runtime_reset() -> None:
    global _runtime
    with _runtime_lock:
        _runtime = None


def simulator_step(now: float | None = None) -> tuple[list[Quote], list[tuple[str, BarData]]]:
    """One tick of the simulator loop: new ticks into bars and quotes, stored,
    then handed to listeners. Returns (quotes, touched bars)."""
    now = now if now is not None else time.time()
    runtime = _runtime_get(now)
    batch = runtime.feed.poll(now)
    touched = ticks_ingest(builder=runtime.builder, instrument_ids=runtime.instrument_ids, ticks=batch.ticks, quotes=batch.quotes)
    runtime.steps += 1
    if batch.ticks:
        cache.set(FEED_STATUS_KEY, {"last_tick_time": now, "symbols": len(runtime.feed.instruments), "steps": runtime.steps}, timeout=None)
    market_update_notify(batch.quotes, touched)
    return batch.quotes, touched


def market_update_notify(quotes: list[Quote], touched: list[tuple[str, BarData]]) -> None:
    """Hand a step's fresh quotes and touched 1-minute bars to the listeners
    (paper matching, the broadcaster): the simulator's and broker feeds' alike."""
    for listener in _quote_listeners:
        try:
            listener(quotes)
        except Exception:
            logger.exception("quote listener failed")
    for update_listener in _update_listeners:
        try:
            update_listener(quotes, touched)
        except Exception:
            logger.exception("market update listener failed")


FEED_STATUS_KEY = "md:feed:simulator"
SIMULATOR_LOOP = "marketdata.simulator"


# --- quotes for a process that does not run the loop ---------------------------------------

_lookup_simulator = Simulator()  # the pure price engine and its day cache, kept across lookups


def simulated_quotes(symbols: Iterable[str], *, now: float | None = None) -> dict[str, Quote]:
    """The simulator's quotes at ``now`` of the symbols it prices and that are
    in session, for a process that does not run the simulator loop (on the
    embedded default the cache is per process, so the CLI's holds none). The
    simulator is a pure function of seed, symbol and time: these are the
    quotes the server's loop stores. Nothing is written; the instruments are
    read on each call (the loop's feed and its state are not touched)."""
    now = now if now is not None else time.time()
    with _runtime_lock:
        feed = SimulatedFeed(sim_instruments(), settings.SIMULATOR_SEED, simulator=_lookup_simulator)
        second = int(now)
        return {symbol: feed.quote(symbol, second) for symbol in dict.fromkeys(symbols) if feed.in_session(symbol, second)}


def simulator_feed_status() -> dict[str, Any]:
    """Shared through the cache: the loop may run in another process."""
    status = cache.get(FEED_STATUS_KEY) or {}
    return {
        "name": "simulator",
        "enabled": settings.SIMULATOR_ENABLED,
        "symbols": status.get("symbols", 0),
        "last_tick_time": status.get("last_tick_time"),
        "steps": status.get("steps", 0),
    }
