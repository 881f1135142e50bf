from django.urls import re_path

from core.urls import route
from marketdata.api import datafeed, fo, views

urlpatterns = [
    # TradingView UDF
    *route("datafeed/config", datafeed.ConfigView.as_view(), name="datafeed-config"),
    *route("datafeed/symbols", datafeed.SymbolInfoView.as_view(), name="datafeed-symbols"),
    *route("datafeed/search", datafeed.SearchView.as_view(), name="datafeed-search"),
    *route("datafeed/history", datafeed.HistoryView.as_view(), name="datafeed-history"),
    *route("datafeed/quotes", datafeed.QuotesView.as_view(), name="datafeed-quotes"),
    *route("datafeed/time", datafeed.TimeView.as_view(), name="datafeed-time"),
    *route("datafeed/marks", datafeed.MarksView.as_view(), name="datafeed-marks"),
    *route("datafeed/timescale_marks", datafeed.TimescaleMarksView.as_view(), name="datafeed-timescale-marks"),
    # Upstream paths
    *route("datafeed/resolve/<textpath:symbol>", datafeed.ResolveView.as_view(), name="datafeed-resolve"),
    *route("datafeed/bars", datafeed.BarsView.as_view(), name="datafeed-bars"),
    *route("datafeed/health", datafeed.DatafeedHealthView.as_view(), name="datafeed-health"),
    # Anything else under datafeed/ still answers in UDF's shape.
    re_path(r"^datafeed(?:/(?P<rest>.*))?$", datafeed.datafeed_not_found),
    # REST for other programs
    *route("symbols", views.SymbolListView.as_view(), name="symbols"),
    *route("symbols/<textpath:symbol>", views.SymbolDetailView.as_view(), name="symbol-detail"),
    *route("quotes", views.QuoteListView.as_view(), name="quotes"),
    *route("history-bars", views.HistoryBarsView.as_view(), name="history-bars"),
    # F&O analytics
    *route("fo/calculator", fo.CalculatorView.as_view(), name="fo-calculator"),
    *route("fo/strike-distribution", fo.StrikeDistributionView.as_view(), name="fo-strike-distribution"),
    *route("fo/moneyness-series", fo.MoneynessSeriesView.as_view(), name="fo-moneyness-series"),
    *route("futures/position-signals", fo.PositionSignalsView.as_view(), name="futures-position-signals"),
    *route("futures/rollover-metrics", fo.RolloverMetricsView.as_view(), name="futures-rollover-metrics"),
]
