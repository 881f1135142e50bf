"""The one small interface every market-data feed implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from marketdata.types import Quote, Tick


@dataclass
class FeedBatch:
    ticks: list[Tick] = field(default_factory=list)
    quotes: list[Quote] = field(default_factory=list)


@runtime_checkable
class Feed(Protocol):
    name: str
    last_tick_time: float | None

    def poll(self, now: float) -> FeedBatch:
        """Everything that happened up to ``now`` since the previous poll."""
        ...

    def symbols(self) -> list[str]: ...
