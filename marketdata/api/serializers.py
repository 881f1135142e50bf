"""Input serializers (query strings and bodies) and output serializers.

The UDF output serializers only document the wire shapes for the schema: the
datafeed builds its bodies in ``marketdata.api.udf``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.decimals import plain_decimal
from marketdata.models import Instrument, InstrumentType, OptionType

# datetime.fromtimestamp is good up to year 9999; refuse what it cannot hold.
_MAX_UNIX = 253_402_300_799


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}]})
class UnixTimeField(serializers.Field):
    """Unix seconds, or an ISO 8601 date or time (naive = UTC), as int seconds."""

    default_error_messages = {"invalid": "Give unix seconds or an ISO 8601 time."}

    def to_internal_value(self, data: Any) -> int:
        text = str(data).strip()
        try:
            value = int(float(text))
        except OverflowError:  # inf, -inf, 1e999
            self.fail("invalid")
        except ValueError:  # NaN too, and every date text
            moment = parse_datetime(text)
            if moment is None:
                day = parse_date(text)
                moment = datetime(day.year, day.month, day.day) if day is not None else None  # noqa: DTZ001
            if moment is None:
                self.fail("invalid")
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            value = int(moment.timestamp())
        if not -_MAX_UNIX <= value <= _MAX_UNIX:
            self.fail("invalid")
        return value

    def to_representation(self, value: int) -> int:
        return value


class PlainDecimalField(serializers.DecimalField):
    """Decimals as strings without the column's trailing zeros: ``"0.01"``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", None)
        kwargs.setdefault("decimal_places", None)
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> str:
        return str(plain_decimal(Decimal(value)))  # DRF never passes None here


class _WithTimeRange(serializers.Serializer):
    """Adds ``from`` (a Python keyword, hence not a class attribute) and ``to``."""

    to = UnixTimeField(required=False, help_text="End of the range, exclusive: unix seconds or ISO 8601. Default: now.")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = UnixTimeField(required=False, help_text="Start of the range, inclusive: unix seconds or ISO 8601.")
        return fields


class HistoryQuerySerializer(_WithTimeRange):
    symbol = serializers.CharField(max_length=200)
    resolution = serializers.CharField(max_length=10, help_text="1, 5, 15, 30, 60, 240, 1D, 1W, 1M (D, W, M accepted).")
    countback = serializers.IntegerField(required=False, help_text="The last N bars before `to`; wins over `from`.")


class MarksQuerySerializer(_WithTimeRange):
    symbol = serializers.CharField(max_length=200)
    resolution = serializers.CharField(max_length=10, required=False, default="1D")


class SymbolQuerySerializer(serializers.Serializer):
    symbol = serializers.CharField(max_length=200)


class SearchQuerySerializer(serializers.Serializer):
    query = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    type = serializers.CharField(required=False, allow_blank=True, default="", max_length=20)
    exchange = serializers.CharField(required=False, allow_blank=True, default="", max_length=32)
    limit = serializers.IntegerField(required=False, default=30, min_value=1, help_text="At most 200 are returned.")


class QuotesQuerySerializer(serializers.Serializer):
    symbols = serializers.CharField(help_text="Comma-separated symbols.")

    def validate_symbols(self, value: str) -> list[str]:
        names = [name.strip() for name in value.split(",") if name.strip()]
        if not names:
            raise serializers.ValidationError("Give at least one symbol.")
        return names


class SymbolListQuerySerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=InstrumentType.choices, required=False)
    exchange = serializers.CharField(required=False, max_length=32)
    venue = serializers.CharField(required=False, max_length=32, help_text="Where it trades: SIM, KRX, NSE, BSE, NFO, a CCXT exchange id.")
    active = serializers.BooleanField(required=False, allow_null=True, default=None)
    search = serializers.CharField(required=False, max_length=200, help_text="Part of the symbol or description.")


class QuotesBodySerializer(serializers.Serializer):
    symbols = serializers.ListField(child=serializers.CharField(max_length=200), allow_empty=False)


# --- UDF wire shapes (documentation) ----------------------------------------------------


class UdfErrorSerializer(serializers.Serializer):
    s = serializers.ChoiceField(choices=["error"])
    errmsg = serializers.CharField()


class UdfNamedValueSerializer(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.CharField()


class UdfExchangeSerializer(serializers.Serializer):
    value = serializers.CharField()
    name = serializers.CharField()
    desc = serializers.CharField()


class UdfConfigSerializer(serializers.Serializer):
    supported_resolutions = serializers.ListField(child=serializers.CharField())
    supports_search = serializers.BooleanField()
    supports_group_request = serializers.BooleanField()
    supports_marks = serializers.BooleanField()
    supports_timescale_marks = serializers.BooleanField()
    supports_time = serializers.BooleanField()
    exchanges = UdfExchangeSerializer(many=True)
    symbols_types = UdfNamedValueSerializer(many=True)


class UdfSymbolInfoSerializer(serializers.Serializer):
    name = serializers.CharField()
    ticker = serializers.CharField()
    description = serializers.CharField()
    type = serializers.CharField()
    session = serializers.CharField()
    exchange = serializers.CharField()
    listed_exchange = serializers.CharField()
    timezone = serializers.CharField()
    minmov = serializers.IntegerField()
    pricescale = serializers.IntegerField()
    has_intraday = serializers.BooleanField()
    has_daily = serializers.BooleanField()
    has_weekly_and_monthly = serializers.BooleanField()
    supported_resolutions = serializers.ListField(child=serializers.CharField())
    intraday_multipliers = serializers.ListField(child=serializers.CharField())
    volume_precision = serializers.IntegerField()
    data_status = serializers.ChoiceField(choices=["streaming", "endofday", "delayed_streaming"])
    currency_code = serializers.CharField()


class UdfSearchItemSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    full_name = serializers.CharField()
    description = serializers.CharField()
    exchange = serializers.CharField()
    ticker = serializers.CharField()
    type = serializers.CharField()


class UdfHistorySerializer(serializers.Serializer):
    s = serializers.ChoiceField(choices=["ok", "no_data"])
    t = serializers.ListField(child=serializers.IntegerField(), required=False, help_text="Bar starts, unix seconds.")
    o = serializers.ListField(child=serializers.FloatField(), required=False)
    h = serializers.ListField(child=serializers.FloatField(), required=False)
    l = serializers.ListField(child=serializers.FloatField(), required=False)  # noqa: E741
    c = serializers.ListField(child=serializers.FloatField(), required=False)
    v = serializers.ListField(child=serializers.FloatField(), required=False)
    nextTime = serializers.IntegerField(required=False, help_text="On no_data: start of the newest bar before the range.")  # noqa: N815


class UdfQuoteValuesSerializer(serializers.Serializer):
    ch = serializers.FloatField(allow_null=True, help_text="lp - prev_close_price.")
    chp = serializers.FloatField(allow_null=True)
    short_name = serializers.CharField()
    exchange = serializers.CharField()
    description = serializers.CharField()
    lp = serializers.FloatField()
    ask = serializers.FloatField(allow_null=True)
    bid = serializers.FloatField(allow_null=True)
    spread = serializers.FloatField(allow_null=True)
    open_price = serializers.FloatField(allow_null=True, help_text="Open of the current trading day's 1D bar.")
    high_price = serializers.FloatField(allow_null=True)
    low_price = serializers.FloatField(allow_null=True)
    prev_close_price = serializers.FloatField(allow_null=True, help_text="Close of the previous trading day's 1D bar.")
    volume = serializers.FloatField()


class UdfQuoteSerializer(serializers.Serializer):
    s = serializers.ChoiceField(choices=["ok", "error"])
    n = serializers.CharField(help_text="The symbol as requested.")
    v = UdfQuoteValuesSerializer(help_text="Empty on error.")


class UdfQuotesSerializer(serializers.Serializer):
    s = serializers.ChoiceField(choices=["ok"])
    d = UdfQuoteSerializer(many=True)


class UdfMarkSerializer(serializers.Serializer):
    id = serializers.CharField()
    time = serializers.IntegerField()
    color = serializers.CharField()
    text = serializers.CharField(required=False)
    label = serializers.CharField()  # type: ignore[assignment]
    labelFontColor = serializers.CharField(required=False)  # noqa: N815
    minSize = serializers.IntegerField(required=False)  # noqa: N815
    tooltip = serializers.ListField(child=serializers.CharField(), required=False)


class FeedStatusSerializer(serializers.Serializer):
    name = serializers.CharField()
    enabled = serializers.BooleanField()
    symbols = serializers.IntegerField()
    last_tick_time = serializers.FloatField(allow_null=True, help_text="Unix seconds of the last tick.")
    steps = serializers.IntegerField()
    stale = serializers.BooleanField()
    feeds = serializers.IntegerField(required=False, help_text="Broker feeds: connections polled.")
    dropped = serializers.IntegerField(required=False, help_text="Broker feeds: ticks dropped by a full buffer.")
    refused = serializers.IntegerField(required=False, help_text="Broker feeds: ticks and quotes of instruments quoted by another source.")
    malformed = serializers.IntegerField(required=False, help_text="Broker feeds: frames that could not be read (skipped).")
    reconnects = serializers.IntegerField(required=False, help_text="Broker feeds: connections opened again after a drop.")


class SubscribersSerializer(serializers.Serializer):
    quotes = serializers.IntegerField()
    bars = serializers.IntegerField()
    channels = serializers.IntegerField()


class DatafeedHealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded"])
    time = serializers.IntegerField()
    feeds = FeedStatusSerializer(many=True)
    subscribers = SubscribersSerializer()
    broadcasts_sent = serializers.IntegerField()
    broadcasts_skipped = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]


# --- REST (project conventions) ---------------------------------------------------------


class InstrumentSerializer(serializers.ModelSerializer):
    underlying = serializers.SlugRelatedField(slug_field="symbol", read_only=True, allow_null=True)  # type: ignore[var-annotated]
    # "" for instruments that are not options (as stored); the schema says so.
    option_type = serializers.ChoiceField(choices=OptionType.choices, allow_blank=True, read_only=True)
    tick_size = PlainDecimalField(read_only=True)
    lot_size = PlainDecimalField(read_only=True)
    multiplier = PlainDecimalField(read_only=True)
    strike = PlainDecimalField(read_only=True, allow_null=True)

    class Meta:
        model = Instrument
        fields = [
            "id",
            "symbol",
            "description",
            "exchange",
            "venue",
            "code",
            "quote_source",
            "type",
            "currency",
            "tick_size",
            "lot_size",
            "multiplier",
            "session",
            "timezone",
            "expiry",
            "strike",
            "option_type",
            "underlying",
            "broker_codes",
            "sim_params",
            "active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class QuoteSerializer(serializers.Serializer):
    """``marketdata.quotes.quote_as_dict``: the same shape as on ``quotes:<symbol>``."""

    symbol = serializers.CharField()
    last = serializers.DecimalField(max_digits=None, decimal_places=None)
    bid = serializers.DecimalField(max_digits=None, decimal_places=None, allow_null=True)
    ask = serializers.DecimalField(max_digits=None, decimal_places=None, allow_null=True)
    bid_size = serializers.DecimalField(max_digits=None, decimal_places=None, allow_null=True)
    ask_size = serializers.DecimalField(max_digits=None, decimal_places=None, allow_null=True)
    volume = serializers.DecimalField(max_digits=None, decimal_places=None)
    open_interest = serializers.DecimalField(max_digits=None, decimal_places=None, allow_null=True)
    change = serializers.DecimalField(max_digits=None, decimal_places=None, allow_null=True, help_text="last - prev_close.")
    change_percent = serializers.DecimalField(max_digits=None, decimal_places=None, allow_null=True)
    day_open = serializers.DecimalField(
        max_digits=None,
        decimal_places=None,
        allow_null=True,
        help_text="Open of the current trading day's 1D bar (the session day in the instrument's timezone).",
    )
    day_high = serializers.DecimalField(max_digits=None, decimal_places=None, allow_null=True)
    day_low = serializers.DecimalField(max_digits=None, decimal_places=None, allow_null=True)
    prev_close = serializers.DecimalField(
        max_digits=None, decimal_places=None, allow_null=True, help_text="Close of the previous trading day's 1D bar."
    )
    time = serializers.DateTimeField(help_text="The last change, ISO 8601 UTC.")
    ts = serializers.FloatField(help_text="The last change, unix seconds.")
    stale = serializers.BooleanField()


class InstrumentDetailSerializer(InstrumentSerializer):
    quote = QuoteSerializer(read_only=True, allow_null=True, help_text="The latest quote, or null.")

    class Meta(InstrumentSerializer.Meta):
        fields = [*InstrumentSerializer.Meta.fields, "quote"]
        read_only_fields = fields


class QuoteListSerializer(serializers.Serializer):
    results = QuoteSerializer(many=True)
    missing = serializers.ListField(child=serializers.CharField(), help_text="Requested symbols without a quote.")


class BarSerializer(serializers.Serializer):
    time = serializers.DateTimeField(help_text="Start of the bar, ISO 8601 UTC.")
    open = serializers.DecimalField(max_digits=None, decimal_places=None)
    high = serializers.DecimalField(max_digits=None, decimal_places=None)
    low = serializers.DecimalField(max_digits=None, decimal_places=None)
    close = serializers.DecimalField(max_digits=None, decimal_places=None)
    volume = serializers.DecimalField(max_digits=None, decimal_places=None)


class HistoryBarsSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    resolution = serializers.CharField()
    bars = BarSerializer(many=True)
    next_time = serializers.DateTimeField(allow_null=True, help_text="When no bar is in the range: start of the newest bar before it.")
