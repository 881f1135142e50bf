"""Plain market-data types shared by feeds, broker adapters and the OMS.

No Django import here: adapters and the simulator build these, services store
and publish them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

# Resolutions in minutes for intraday; "1D", "1W", "1M" calendar-based.
INTRADAY_RESOLUTIONS: dict[str, int] = {"1": 1, "5": 5, "15": 15, "30": 30, "60": 60, "240": 240}
CALENDAR_RESOLUTIONS = ("1D", "1W", "1M")
SUPPORTED_RESOLUTIONS = (*INTRADAY_RESOLUTIONS, *CALENDAR_RESOLUTIONS)
_ALIASES = {"D": "1D", "W": "1W", "M": "1M", "1440": "1D"}


def normalize_resolution(value: str) -> str | None:
    """Canonical resolution name, or None when unsupported."""
    value = str(value).strip().upper()
    value = _ALIASES.get(value, value)
    return value if value in SUPPORTED_RESOLUTIONS else None


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade print (or a mid-price move when a feed has no trades)."""

    symbol: str
    time: float  # unix seconds
    price: Decimal
    size: Decimal = Decimal(0)


@dataclass(slots=True)
class Bar:
    time: int  # unix seconds of the bar's start
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Decimal(0)
    open_interest: Decimal | None = None

    def merge_tick(self, price: Decimal, size: Decimal) -> None:
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        self.close = price
        self.volume += size

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Quote:
    symbol: str
    time: float  # unix seconds of the last change
    last: Decimal
    bid: Decimal | None = None
    ask: Decimal | None = None
    bid_size: Decimal | None = None
    ask_size: Decimal | None = None
    volume: Decimal = Decimal(0)  # today's volume
    open_interest: Decimal | None = None
    day_open: Decimal | None = None
    day_high: Decimal | None = None
    day_low: Decimal | None = None
    prev_close: Decimal | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def change(self) -> Decimal | None:
        return None if self.prev_close is None else self.last - self.prev_close

    @property
    def change_percent(self) -> Decimal | None:
        if not self.prev_close:
            return None
        return (self.last - self.prev_close) / self.prev_close * 100
