"""The TradingView UDF datafeed under ``/api/v1/datafeed/`` and its upstream
paths (``resolve``, ``bars``, ``POST quotes``, ``health``).

Every failure here answers UDF's ``{"s": "error", "errmsg": ...}`` with the
same status the project's error shape would have, never that shape itself.
History bodies are encoded once, straight from the columns, and returned as
bytes: no serializer and no per-bar object on that path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions as drf
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

import marketdata.api as registry
from accounts.permissions import ApiKeyScopePermission
from core.exceptions import exception_handler
from marketdata.api import udf
from marketdata.api.serializers import (
    DatafeedHealthSerializer,
    HistoryQuerySerializer,
    MarksQuerySerializer,
    QuotesBodySerializer,
    QuotesQuerySerializer,
    SearchQuerySerializer,
    SymbolQuerySerializer,
    UdfConfigSerializer,
    UdfErrorSerializer,
    UdfHistorySerializer,
    UdfMarkSerializer,
    UdfQuotesSerializer,
    UdfSearchItemSerializer,
    UdfSymbolInfoSerializer,
)
from marketdata.selectors import (
    bars_history,
    datafeed_health,
    history_target,
    instrument_exchanges,
    instrument_resolve,
    instruments_search,
    quotes_lookup,
    resolution_or_error,
)

_ERRORS = {400: UdfErrorSerializer, 401: UdfErrorSerializer, 403: UdfErrorSerializer, 404: UdfErrorSerializer, 422: UdfErrorSerializer}
_TAG = ["datafeed"]


class DatafeedAccess(BasePermission):
    """Authenticated, unless ``DATAFEED_PUBLIC`` (read per request)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(settings.DATAFEED_PUBLIC or (request.user and request.user.is_authenticated))


def _errmsg(error: Mapping[str, Any]) -> str:
    message = str(error.get("message") or "The request was refused.")
    fields = error.get("fields") or {}
    if fields:
        details = "; ".join(f"{name}: {' '.join(map(str, problems))}" for name, problems in fields.items())
        if message == "The request is not valid.":
            return f"Invalid parameters: {details}"
    return message


def udf_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """The project's handler decides status and message; UDF gets its own shape."""
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf.ValidationError):
        response.status_code = 400  # a missing or malformed parameter
    error = response.data.get("error", {}) if isinstance(response.data, dict) else {}
    response.data = udf.error_body(_errmsg(error))
    return response


class UdfView(APIView):
    permission_classes = [DatafeedAccess, ApiKeyScopePermission]

    def get_exception_handler(self):  # type: ignore[no-untyped-def]
        return udf_exception_handler


def _query(serializer_class: type[Serializer], request: Request) -> dict[str, Any]:
    # A plain dict: DRF reads a missing boolean in a QueryDict as False.
    data = serializer_class(data=request.query_params.dict())
    data.is_valid(raise_exception=True)
    return dict(data.validated_data)


def _json(body: bytes) -> HttpResponse:
    return HttpResponse(body, content_type="application/json")


class ConfigView(UdfView):
    @extend_schema(responses={200: UdfConfigSerializer, **_ERRORS}, operation_id="datafeed_config", tags=_TAG)
    def get(self, request: Request) -> Response:
        body = udf.config_body(
            exchanges=instrument_exchanges(),
            supports_marks=registry.marks_provider is not None,
            supports_timescale_marks=registry.timescale_marks_provider is not None,
        )
        return Response(body)


class SymbolInfoView(UdfView):
    @extend_schema(
        parameters=[SymbolQuerySerializer], responses={200: UdfSymbolInfoSerializer, **_ERRORS}, operation_id="datafeed_symbols", tags=_TAG
    )
    def get(self, request: Request) -> Response:
        query = _query(SymbolQuerySerializer, request)
        return Response(udf.symbol_info(instrument_resolve(name=query["symbol"])))


class ResolveView(UdfView):
    @extend_schema(responses={200: UdfSymbolInfoSerializer, **_ERRORS}, operation_id="datafeed_resolve", tags=_TAG)
    def get(self, request: Request, symbol: str) -> Response:
        # <path:...> also swallows the optional trailing slash.
        name = symbol[:-1] if symbol.endswith("/") else symbol
        return Response(udf.symbol_info(instrument_resolve(name=name)))


class SearchView(UdfView):
    @extend_schema(
        parameters=[SearchQuerySerializer],
        responses={200: UdfSearchItemSerializer(many=True), **_ERRORS},
        operation_id="datafeed_search",
        tags=_TAG,
    )
    def get(self, request: Request) -> Response:
        query = _query(SearchQuerySerializer, request)
        return Response([udf.search_item(i) for i in instruments_search(**query)])


def _history(request: Request) -> HttpResponse:
    query = _query(HistoryQuerySerializer, request)
    target = history_target(name=query["symbol"])
    resolution = resolution_or_error(query["resolution"])
    end = query.get("to")
    history = bars_history(
        instrument=target.instrument,
        stored=target.stored,
        resolution=resolution,
        end=end if end is not None else int(time.time()) + 1,
        start=query.get("from"),
        countback=query.get("countback"),
    )
    return _json(udf.history_body(history))


class HistoryView(UdfView):
    @extend_schema(
        parameters=[HistoryQuerySerializer],
        responses={200: UdfHistorySerializer, **_ERRORS},
        operation_id="datafeed_history",
        tags=_TAG,
        description="Bars starting in [from, to), or the last `countback` before `to`; `from == to` asks for the one bar starting at "
        "`from` (else `no_data` with `nextTime`). Days and intraday bars follow the instrument's session in its timezone.",
    )
    def get(self, request: Request) -> HttpResponse:
        return _history(request)


class BarsView(UdfView):
    @extend_schema(
        parameters=[HistoryQuerySerializer],
        responses={200: UdfHistorySerializer, **_ERRORS},
        operation_id="datafeed_bars",
        tags=_TAG,
        description="The same as `history`.",
    )
    def get(self, request: Request) -> HttpResponse:
        return _history(request)


def _quotes(names: list[str]) -> dict[str, Any]:
    return {"s": "ok", "d": [udf.quote_entry(name, instrument, quote) for name, instrument, quote in quotes_lookup(symbols=names)]}


class QuotesView(UdfView):
    post_reads = True  # the POST is the GET with a long symbol list: a read key may send it

    @extend_schema(
        parameters=[QuotesQuerySerializer],
        responses={200: UdfQuotesSerializer, **_ERRORS},
        operation_id="datafeed_quotes",
        tags=_TAG,
    )
    def get(self, request: Request) -> Response:
        return Response(_quotes(_query(QuotesQuerySerializer, request)["symbols"]))

    @extend_schema(
        request=QuotesBodySerializer,
        responses={200: UdfQuotesSerializer, **_ERRORS},
        operation_id="datafeed_quotes_post",
        tags=_TAG,
    )
    def post(self, request: Request) -> Response:
        data = QuotesBodySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(_quotes(data.validated_data["symbols"]))


class TimeView(UdfView):
    @extend_schema(
        responses={200: {"type": "integer", "description": "Server time, unix seconds."}, **_ERRORS},
        operation_id="datafeed_time",
        tags=_TAG,
    )
    def get(self, request: Request) -> HttpResponse:
        return _json(str(int(time.time())).encode())


def _marks(request: Request, provider: registry.MarksProvider | None) -> Response:
    if provider is None:
        return Response([])
    query = _query(MarksQuerySerializer, request)
    instrument = instrument_resolve(name=query["symbol"])
    end = query.get("to")
    marks = provider(
        user=request.user,
        symbol=instrument.symbol,
        start=query.get("from") or 0,
        end=end if end is not None else int(time.time()) + 1,
        resolution=resolution_or_error(query["resolution"]),
    )
    return Response(marks)


class MarksView(UdfView):
    @extend_schema(
        parameters=[MarksQuerySerializer],
        responses={200: UdfMarkSerializer(many=True), **_ERRORS},
        operation_id="datafeed_marks",
        tags=_TAG,
        description="Marks on bars; `[]` until a marks provider is registered (`supports_marks` in config).",
    )
    def get(self, request: Request) -> Response:
        return _marks(request, registry.marks_provider)


class TimescaleMarksView(UdfView):
    @extend_schema(
        parameters=[MarksQuerySerializer],
        responses={200: UdfMarkSerializer(many=True), **_ERRORS},
        operation_id="datafeed_timescale_marks",
        tags=_TAG,
    )
    def get(self, request: Request) -> Response:
        return _marks(request, registry.timescale_marks_provider)


class DatafeedHealthView(UdfView):
    @extend_schema(
        responses={200: DatafeedHealthSerializer, **_ERRORS},
        operation_id="datafeed_health",
        tags=_TAG,
    )
    def get(self, request: Request) -> Response:
        return Response(datafeed_health())


@csrf_exempt  # any method on an unknown path is a UDF 404, never the CSRF page
def datafeed_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    return JsonResponse(udf.error_body("Unknown datafeed path."), status=404)
