"""Server-rendered F&O pages: the option chain (calls | strike | puts with IV,
Greeks, OI bars and the smile) and the futures buildup signals and rollover,
from the same services as the API."""

from __future__ import annotations

import time
from datetime import date
from decimal import Decimal
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.exceptions import DomainError, InvalidInput, NotFound
from marketdata.bars import resolution_seconds
from marketdata.fo.chain import strike_distribution
from marketdata.fo.futures import futures_position_signals, futures_rollover_metrics
from marketdata.models import Instrument, InstrumentType
from marketdata.selectors import resolution_or_error
from marketdata.sessions import contract_expired

SMILE_WIDTH, SMILE_HEIGHT = 600, 160


def _live_chains(now: float) -> list[tuple[str, date]]:
    """(underlying, expiry) of every active option chain not yet expired."""
    rows = (
        Instrument.objects.filter(type=InstrumentType.OPTION, active=True, expiry__isnull=False, underlying__isnull=False)
        .values_list("underlying__symbol", "expiry", "timezone", "session")
        .distinct()
        .order_by("underlying__symbol", "expiry")
    )
    seen: dict[tuple[str, date], None] = {}
    for symbol, expiry, tz_name, session in rows:
        if expiry is not None and not contract_expired(expiry, tz_name, session, now):
            seen[(symbol, expiry)] = None
    return list(seen)


def _smile_points(smile: list[dict[str, Any]]) -> str:
    points = [(float(p["strike"]), p["iv"]) for p in smile if p["iv"] is not None]
    if len(points) < 2:
        return ""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    span_x, span_y = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    return " ".join(
        f"{(x - x0) / span_x * SMILE_WIDTH:.1f},{SMILE_HEIGHT - (y - y0) / span_y * (SMILE_HEIGHT - 10) - 5:.1f}" for x, y in points
    )


@login_required
def option_chain(request: HttpRequest) -> HttpResponse:
    now = time.time()
    chains = _live_chains(now)
    underlying = request.GET.get("underlying", "")[:64] or (chains[0][0] if chains else "")
    context: dict[str, Any] = {"chains": chains, "underlying": underlying, "data": None, "error": None}
    status = 200
    try:
        expiry_text = request.GET.get("expiry", "")
        expiry = date.fromisoformat(expiry_text) if expiry_text else next((e for u, e in chains if u == underlying), None)
        if not underlying or expiry is None:
            context["error"] = "No live option chain."
        else:
            data = strike_distribution(underlying=underlying, expiry=expiry, strikes=20)
            max_oi = max([float(r[s]["open_interest"] or 0) for r in data["strikes"] for s in ("call", "put") if r[s]] or [0.0]) or 1.0
            for row in data["strikes"]:
                for side in ("call", "put"):
                    if row[side]:
                        row[side]["oi_percent"] = round(float(row[side]["open_interest"] or 0) / max_oi * 100, 1)
            context.update(
                data=data, expiry=expiry, smile_points=_smile_points(data["smile"]), smile_width=SMILE_WIDTH, smile_height=SMILE_HEIGHT
            )
    except ValueError:
        context["error"], status = "The expiry is a date, YYYY-MM-DD.", 422
    except DomainError as exc:
        context["error"], status = str(exc), exc.status_code
    return render(request, "marketdata/fo_chain.html", context, status=status)


# --- futures: buildup signals and rollover -----------------------------------------------------

#: The page's range picker: label -> seconds back from now.
FUTURES_RANGES = {"1h": 3_600, "6h": 6 * 3_600, "1d": 86_400, "5d": 5 * 86_400, "30d": 30 * 86_400}
FUTURES_RESOLUTIONS = ("1", "5", "15", "30", "60", "240", "1D")
MAX_SIGNAL_BARS = 2_000  # a range/resolution pair with more bars is refused (bounded work)
SIGNAL_LABELS = {
    "long_buildup": ("Long buildup", "▲ price, ▲ OI", "up"),
    "short_buildup": ("Short buildup", "▼ price, ▲ OI", "down"),
    "long_unwinding": ("Long unwinding", "▼ price, ▼ OI", "down"),
    "short_covering": ("Short covering", "▲ price, ▼ OI", "up"),
    "neutral": ("Neutral", "under the threshold", "muted"),
}


def _futures_underlyings(now: float) -> list[str]:
    """Symbols of the underlyings with at least one live future (one query)."""
    rows = (
        Instrument.objects.filter(type=InstrumentType.FUTURE, active=True, expiry__isnull=False, underlying__isnull=False)
        .values_list("underlying__symbol", "expiry", "timezone", "session")
        .order_by("underlying__symbol", "expiry")
    )
    seen: dict[str, None] = {}
    for symbol, expiry, tz_name, session in rows:
        if expiry is not None and not contract_expired(expiry, tz_name, session, now):
            seen[symbol] = None
    return list(seen)


def _arrow(value: str | None) -> str:
    """▲ up, ▼ down, ■ unchanged: the direction in text, not only in colour."""
    if value is None:
        return "–"
    change = Decimal(value)
    return "▲" if change > 0 else "▼" if change < 0 else "■"


@login_required
def futures_view(request: HttpRequest) -> HttpResponse:
    now = time.time()
    underlyings = _futures_underlyings(now)
    underlying = request.GET.get("underlying", "")[:64] or (underlyings[0] if underlyings else "")
    resolution_text = request.GET.get("resolution", "15")[:10]
    range_key = request.GET.get("range", "1d")[:10]
    context: dict[str, Any] = {
        "underlyings": underlyings,
        "underlying": underlying,
        "resolutions": FUTURES_RESOLUTIONS,
        "ranges": list(FUTURES_RANGES),
        "resolution": resolution_text,
        "range": range_key,
        "signals": None,
        "rollover": None,
        "error": None,
    }
    status = 200
    try:
        if not underlying:
            raise NotFound("No underlying has live futures.", code="no_futures")
        resolution = resolution_or_error(resolution_text)
        if range_key not in FUTURES_RANGES:
            raise InvalidInput(f"Unknown range '{range_key}': one of {', '.join(FUTURES_RANGES)}.", code="validation_error")
        span = FUTURES_RANGES[range_key]
        if span // resolution_seconds(resolution) > MAX_SIGNAL_BARS:
            raise InvalidInput(
                f"{range_key} at resolution {resolution} is over {MAX_SIGNAL_BARS} bars: pick a coarser resolution or a shorter range.",
                code="validation_error",
            )
        rollover = futures_rollover_metrics(underlying=underlying, now=now)
        max_oi = max([float(c["open_interest"] or 0) for c in rollover["contracts"]] or [0.0]) or 1.0
        for c in rollover["contracts"]:
            c["oi_percent"] = round(float(c["open_interest"] or 0) / max_oi * 100, 1)
        end = int(now) + 1
        signals = futures_position_signals(underlying=underlying, resolution=resolution, start=end - span, end=end)
        for row in signals["intervals"]:
            label, hint, tone = SIGNAL_LABELS[row["signal"]]
            row.update(label=label, hint=hint, tone=tone, price_arrow=_arrow(row["price_change"]), oi_arrow=_arrow(row["oi_change"]))
        signals["intervals"].reverse()  # the latest first
        context.update(rollover=rollover, signals=signals, resolution=resolution)
    except DomainError as exc:
        context["error"], status = str(exc), exc.status_code
    return render(request, "marketdata/fo_futures.html", context, status=status)
