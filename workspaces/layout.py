"""The shape of a workspace's layout and a watchlist's columns, checked the
same way for the API, the admin and the services."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from core.serializers import StrictSerializer
from marketdata.types import normalize_resolution

MAX_PANELS = 24
#: What a watchlist row can show: the fields of a quote (``quotes:`` channel) and of its instrument.
WATCHLIST_COLUMNS = (
    "last",
    "change",
    "change_percent",
    "bid",
    "ask",
    "bid_size",
    "ask_size",
    "volume",
    "open_interest",
    "day_open",
    "day_high",
    "day_low",
    "prev_close",
    "time",
    "description",
    "exchange",
    "currency",
)
DEFAULT_COLUMNS = ["last", "change", "change_percent", "bid", "ask"]
# The dashboard's panels: the watchlist, chart and ticket share the page's width
# (percent), the blotters take a percent of its height under the chart.
DEFAULT_PANELS = [
    {"id": "watchlist", "kind": "watchlist", "size": 30},
    {"id": "chart", "kind": "chart", "size": 53},
    {"id": "ticket", "kind": "ticket", "size": 17},
    {"id": "blotters", "kind": "blotters", "size": 30},
]
#: The columns of the dashboard's blotter tables (``data-col`` of their headers),
#: in the order shown; ``layout.columns`` names those a table shows.
BLOTTER_COLUMNS = {
    "working": ("time", "symbol", "side", "type", "qty", "filled", "price", "stop", "tif", "status"),
    "positions": ("symbol", "side", "qty", "avg_price", "last", "unrealized_pnl", "realized_pnl", "unrealized_base"),
    "history": ("time", "symbol", "side", "type", "qty", "filled", "price", "avg_fill", "status", "reason"),
    "fills": ("time", "symbol", "side", "qty", "price", "fee", "realized_pnl", "order"),
    "holdings": ("symbol", "qty", "avg_price", "last", "value", "pnl"),
}
DEFAULT_RESOLUTION = "1"
LAYOUT_KEYS = ("panels", "account_id", "symbol", "resolution", "watchlist_id", "columns")
_SLUG = r"^[a-z0-9][a-z0-9_.-]{0,31}$"


class PanelSerializer(StrictSerializer):
    id = serializers.RegexField(_SLUG, help_text="Unique within the layout: lower-case letters, digits, '_', '-', '.'.")
    kind = serializers.RegexField(_SLUG, help_text="What the panel shows (watchlist, chart, ticket, orders, positions, ...).")
    size = serializers.FloatField(min_value=0, max_value=10000, help_text="Its share of the row or column (a weight or a percent).")


class LayoutSerializer(StrictSerializer):
    panels = PanelSerializer(many=True, required=False, max_length=MAX_PANELS)  # type: ignore[call-arg]
    account_id = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2**63 - 1)
    symbol = serializers.CharField(required=False, allow_null=True, max_length=64)
    resolution = serializers.CharField(required=False, allow_null=True, max_length=4)
    watchlist_id = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2**63 - 1)
    columns = serializers.DictField(
        required=False,
        allow_null=True,
        child=serializers.ListField(child=serializers.CharField(max_length=32), min_length=1, max_length=32),
        help_text="The columns each blotter table shows, by table: " + "; ".join(f"{t}: {' '.join(c)}" for t, c in BLOTTER_COLUMNS.items()),
    )

    def validate_columns(self, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if value is None:
            return None
        for table, columns in value.items():
            known = BLOTTER_COLUMNS.get(table)
            if known is None:
                raise serializers.ValidationError(f"Unknown table {table!r}: one of {', '.join(BLOTTER_COLUMNS)}.")
            unknown = [c for c in columns if c not in known]
            if unknown:
                raise serializers.ValidationError(f"Unknown {table} columns {', '.join(map(repr, unknown))}: any of {', '.join(known)}.")
            if len(set(columns)) != len(columns):
                raise serializers.ValidationError(f"The {table} columns must be unique.")
        return value

    def validate_panels(self, panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [p["id"] for p in panels]
        if len(set(ids)) != len(ids):
            raise serializers.ValidationError("Panel ids must be unique.")
        return panels

    def validate_resolution(self, value: str | None) -> str | None:
        if value is None:
            return None
        resolution = normalize_resolution(value)
        if resolution is None:
            raise serializers.ValidationError("Not a supported resolution (1, 5, 15, 30, 60, 240, 1D, 1W, 1M).")
        return resolution


def layout_full(stored: Any) -> dict[str, Any]:
    """A stored layout with every key (what the API answers), whatever older
    rows hold: unknown keys dropped, missing ones null (panels: empty)."""
    stored = stored if isinstance(stored, dict) else {}
    layout: dict[str, Any] = {key: stored.get(key) for key in LAYOUT_KEYS}
    if not isinstance(layout["panels"], list):
        layout["panels"] = []
    return layout


class ColumnsField(serializers.ListField):
    child = serializers.ChoiceField(choices=WATCHLIST_COLUMNS)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", len(WATCHLIST_COLUMNS))
        kwargs.setdefault("help_text", f"Ordered, unique; any of: {', '.join(WATCHLIST_COLUMNS)}.")
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[str]:
        columns = super().to_internal_value(data)
        if len(set(columns)) != len(columns):
            raise serializers.ValidationError("Columns must be unique.")
        return columns
