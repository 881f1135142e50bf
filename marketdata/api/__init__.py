"""HTTP for market data: the TradingView UDF datafeed and the REST endpoints.

Chart marks come from the OMS (fills on the chart), which ``marketdata`` must
not import: the OMS sets ``marks_provider`` (and ``timescale_marks_provider``)
here, or calls ``register_marks_provider``, in its ``AppConfig.ready()``. Until
then the datafeed says ``supports_marks: false`` and ``/datafeed/marks`` is ``[]``.
"""

from __future__ import annotations

from typing import Any, Protocol


class MarksProvider(Protocol):
    def __call__(self, *, user: Any, symbol: str, start: int, end: int, resolution: str) -> list[dict[str, Any]]:
        """UDF marks (``{"id","time","color","text","label","labelFontColor","minSize"}``)
        or timescale marks (``{"id","time","color","label","tooltip"}``) of ``user``
        for ``symbol`` with ``start <= time < end`` (unix seconds)."""
        ...


marks_provider: MarksProvider | None = None
timescale_marks_provider: MarksProvider | None = None


def register_marks_provider(provider: MarksProvider | None, *, timescale: MarksProvider | None = None) -> None:
    global marks_provider, timescale_marks_provider
    marks_provider = provider
    timescale_marks_provider = timescale
