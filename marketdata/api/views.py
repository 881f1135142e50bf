"""Market data for programs other than TradingView, in the project's REST
conventions: decimals as strings, ISO times, the error shape, cursor lists."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from core.decimals import plain_decimal
from core.pagination import CursorPagination
from core.serializers import ErrorSerializer
from marketdata.api.serializers import (
    HistoryBarsSerializer,
    HistoryQuerySerializer,
    InstrumentDetailSerializer,
    InstrumentSerializer,
    QuoteListSerializer,
    QuotesQuerySerializer,
    SymbolListQuerySerializer,
)
from marketdata.models import Instrument
from marketdata.quotes import quote_as_dict, quote_get
from marketdata.selectors import bars_history, history_target, instrument_get, instruments_list, quotes_lookup, resolution_or_error
from marketdata.services import decimal


def _query(serializer_class: type[Serializer], request: Request) -> dict[str, Any]:
    # A plain dict: DRF reads a missing boolean in a QueryDict as False.
    data = serializer_class(data=request.query_params.dict())
    data.is_valid(raise_exception=True)
    return dict(data.validated_data)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _s(value: Decimal) -> str:
    return str(plain_decimal(value))


class SymbolPagination(CursorPagination):
    ordering = "symbol"


class SymbolListView(generics.ListAPIView):
    serializer_class = InstrumentSerializer
    pagination_class = SymbolPagination

    def get_queryset(self) -> QuerySet[Instrument]:
        return instruments_list(**_query(SymbolListQuerySerializer, self.request)).select_related("underlying")

    @extend_schema(parameters=[SymbolListQuerySerializer], operation_id="symbols_list")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class SymbolDetailView(APIView):
    @extend_schema(responses=InstrumentDetailSerializer, operation_id="symbols_retrieve")
    def get(self, request: Request, symbol: str) -> Response:
        # <path:...> also swallows the optional trailing slash.
        instrument = instrument_get(symbol=symbol[:-1] if symbol.endswith("/") else symbol)
        quote = quote_get(instrument.symbol)
        return Response({**InstrumentSerializer(instrument).data, "quote": quote_as_dict(quote) if quote is not None else None})


class QuoteListView(APIView):
    @extend_schema(parameters=[QuotesQuerySerializer], responses=QuoteListSerializer, operation_id="quotes_list")
    def get(self, request: Request) -> Response:
        names = _query(QuotesQuerySerializer, request)["symbols"]
        now = time.time()
        results, missing = [], []
        for name, _, quote in quotes_lookup(symbols=names):
            if quote is None:
                missing.append(name)
            else:
                results.append(quote_as_dict(quote, now))
        return Response({"results": results, "missing": missing})


class HistoryBarsView(APIView):
    @extend_schema(
        parameters=[HistoryQuerySerializer], responses={200: HistoryBarsSerializer, 404: ErrorSerializer}, operation_id="history_bars"
    )
    def get(self, request: Request) -> Response:
        query = _query(HistoryQuerySerializer, request)
        target = history_target(name=query["symbol"])
        instrument = target.instrument
        if instrument.symbol != query["symbol"]:  # this path takes symbols only, never EXCHANGE:SYMBOL
            instrument_get(symbol=query["symbol"])
        resolution = resolution_or_error(query["resolution"])
        end = query.get("to")
        history = bars_history(
            instrument=instrument,
            stored=target.stored,
            resolution=resolution,
            end=end if end is not None else int(time.time()) + 1,
            start=query.get("from"),
            countback=query.get("countback"),
            convert=decimal,  # exact: Decimals in, decimal strings out
        )
        bars = [
            {"time": _iso(t), "open": _s(o), "high": _s(h), "low": _s(lo), "close": _s(c), "volume": _s(v)}
            for t, o, h, lo, c, v in zip(*history.columns, strict=True)
        ]
        next_time = _iso(history.next_time) if history.next_time is not None else None
        return Response({"symbol": instrument.symbol, "resolution": resolution, "bars": bars, "next_time": next_time})
