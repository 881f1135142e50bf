from __future__ import annotations

from django.db import models


class InstrumentType(models.TextChoices):
    STOCK = "stock", "Stock"
    FUTURE = "future", "Future"
    OPTION = "option", "Option"
    CRYPTO = "crypto", "Crypto"
    INDEX = "index", "Index"
    FX = "fx", "FX rate"


class OptionType(models.TextChoices):
    CALL = "call", "Call"
    PUT = "put", "Put"


class Instrument(models.Model):
    """A tradable (or, for an index, quotable) thing. ``symbol`` may hold ``:``
    and ``/`` (``NSE:INFY``, ``BTC/USDT``)."""

    symbol = models.CharField(max_length=64, unique=True)
    description = models.CharField(max_length=200, blank=True)
    exchange = models.CharField(max_length=32, blank=True)
    # Where it trades: SIM (the simulator) or a broker's market (KRX, NSE, BSE,
    # NFO, a CCXT exchange id upper-cased). A broker's instruments are named
    # VENUE:CODE; ``code`` is the broker's own (005930, INFY, BTC/USDT).
    venue = models.CharField(max_length=32, default="SIM", db_index=True)
    code = models.CharField(max_length=64, blank=True)
    # The one source of its quotes: "simulator" or a broker feed (kis, kite, ccxt).
    quote_source = models.CharField(max_length=16, default="simulator")
    type = models.CharField(max_length=10, choices=InstrumentType.choices, default=InstrumentType.STOCK)
    currency = models.CharField(max_length=10, default="USD")
    tick_size = models.DecimalField(max_digits=20, decimal_places=10, default=0.01)
    lot_size = models.DecimalField(max_digits=20, decimal_places=10, default=1)
    multiplier = models.DecimalField(max_digits=20, decimal_places=10, default=1, help_text="Contract size.")
    session = models.CharField(max_length=32, default="24x7", help_text="UDF session, e.g. 0930-1600 or 24x7.")
    timezone = models.CharField(max_length=40, default="UTC")
    expiry = models.DateField(null=True, blank=True)
    strike = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    option_type = models.CharField(max_length=4, choices=OptionType.choices, blank=True)
    underlying = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="derivatives")
    # Broker codes per broker kind, e.g. {"kis": "005930", "kite": "NSE:INFY", "ccxt": "BTC/USDT"}.
    broker_codes = models.JSONField(default=dict, blank=True)
    # Exchange limits checked before sending (CCXT markets' limits.amount.min / limits.cost.min).
    min_amount = models.DecimalField(max_digits=28, decimal_places=12, null=True, blank=True, help_text="Smallest order quantity.")
    min_notional = models.DecimalField(
        max_digits=28, decimal_places=12, null=True, blank=True, help_text="Smallest order value (qty x price) in the quote currency."
    )
    segment = models.CharField(max_length=16, blank=True, default="", help_text="The broker's segment, e.g. Kite's NFO-OPT.")
    # Option models (marketdata.analytics): per underlying; null means the settings' default.
    risk_free_rate = models.DecimalField(
        max_digits=10, decimal_places=6, null=True, blank=True, help_text="Annual, continuous, as a decimal (0.065 = 6.5%)."
    )
    dividend_yield = models.DecimalField(
        max_digits=10, decimal_places=6, null=True, blank=True, help_text="Annual, continuous, as a decimal."
    )
    # Simulator parameters (start price, annual volatility); empty = not simulated.
    sim_params = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]
        indexes = [models.Index(fields=["type", "active"]), models.Index(fields=["exchange"])]

    def __str__(self) -> str:
        return self.symbol


class Bar(models.Model):
    """An OHLCV bar. Stored at resolution "1" (built from ticks) and at any
    resolution imported from CSV; coarser ones are aggregated on read."""

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="bars")
    resolution = models.CharField(max_length=4, default="1")
    time = models.DateTimeField(help_text="Start of the bar, UTC.")
    open = models.DecimalField(max_digits=24, decimal_places=10)
    high = models.DecimalField(max_digits=24, decimal_places=10)
    low = models.DecimalField(max_digits=24, decimal_places=10)
    close = models.DecimalField(max_digits=24, decimal_places=10)
    volume = models.DecimalField(max_digits=28, decimal_places=8, default=0)
    open_interest = models.DecimalField(max_digits=28, decimal_places=8, null=True, blank=True)

    class Meta:
        ordering = ["instrument", "resolution", "time"]
        constraints = [models.UniqueConstraint(fields=["instrument", "resolution", "time"], name="bar_unique_instrument_resolution_time")]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.resolution} {self.time:%Y-%m-%d %H:%M}"


class DailyBar(models.Model):
    """The maintained daily aggregate of an instrument's 1-minute bars: one row
    per trading day (``marketdata.sessions``), kept exact by the one bar-writing
    service in the transaction that writes the minutes. 1D history reads it;
    1W and 1M aggregate it on read."""

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="daily_bars")
    time = models.DateTimeField(help_text="Start of the trading day: local midnight in the instrument's timezone, UTC.")
    open = models.DecimalField(max_digits=24, decimal_places=10)
    high = models.DecimalField(max_digits=24, decimal_places=10)
    low = models.DecimalField(max_digits=24, decimal_places=10)
    close = models.DecimalField(max_digits=24, decimal_places=10)
    volume = models.DecimalField(max_digits=32, decimal_places=8, default=0)
    first_minute = models.DateTimeField(help_text="Start of the day's first in-session 1-minute bar.")
    last_minute = models.DateTimeField(help_text="Start of the day's last in-session 1-minute bar.")

    class Meta:
        ordering = ["instrument", "time"]
        constraints = [models.UniqueConstraint(fields=["instrument", "time"], name="dailybar_unique_instrument_time")]

    def __str__(self) -> str:
        return f"{self.instrument_id} 1D {self.time:%Y-%m-%d}"
