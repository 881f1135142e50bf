"""F&O analytics endpoints: thin views over ``marketdata.fo``."""

from __future__ import annotations

import time
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from core.serializers import ErrorSerializer
from marketdata.api.fo_serializers import (
    CalculatorQuerySerializer,
    CalculatorSerializer,
    ChainQuerySerializer,
    MoneynessQuerySerializer,
    MoneynessSeriesSerializer,
    RolloverQuerySerializer,
    RolloverSerializer,
    SignalsQuerySerializer,
    SignalsSerializer,
    StrikeDistributionSerializer,
)
from marketdata.fo.calculator import option_calculate
from marketdata.fo.chain import strike_distribution
from marketdata.fo.futures import futures_position_signals, futures_rollover_metrics
from marketdata.fo.series import moneyness_series
from marketdata.selectors import resolution_or_error

ERRORS = {400: ErrorSerializer, 404: ErrorSerializer}
DEFAULT_SPAN = 86_400  # without from: the last day


def _query(serializer_class: type[Serializer], request: Request) -> dict[str, Any]:
    data = serializer_class(data=request.query_params.dict())
    data.is_valid(raise_exception=True)
    return dict(data.validated_data)


def _range(query: dict[str, Any]) -> tuple[int, int]:
    end = query.get("to")
    end = int(end) if end is not None else int(time.time()) + 1
    start = query.get("from")
    return (int(start) if start is not None else end - DEFAULT_SPAN), end


class CalculatorView(APIView):
    @extend_schema(
        parameters=[CalculatorQuerySerializer], responses={200: CalculatorSerializer, 400: ErrorSerializer}, operation_id="fo_calculator"
    )
    def get(self, request: Request) -> Response:
        return Response(option_calculate(**_query(CalculatorQuerySerializer, request)))


class StrikeDistributionView(APIView):
    @extend_schema(
        parameters=[ChainQuerySerializer], responses={200: StrikeDistributionSerializer, **ERRORS}, operation_id="fo_strike_distribution"
    )
    def get(self, request: Request) -> Response:
        return Response(strike_distribution(**_query(ChainQuerySerializer, request)))


class MoneynessSeriesView(APIView):
    @extend_schema(
        parameters=[MoneynessQuerySerializer], responses={200: MoneynessSeriesSerializer, **ERRORS}, operation_id="fo_moneyness_series"
    )
    def get(self, request: Request) -> Response:
        query = _query(MoneynessQuerySerializer, request)
        start, end = _range(query)
        return Response(
            moneyness_series(
                underlying=query["underlying"],
                expiry=query["expiry"],
                option_side=query["option_side"],
                moneyness=query["moneyness"],
                metric=query["metric"],
                resolution=resolution_or_error(query["resolution"]),
                start=start,
                end=end,
            )
        )


class PositionSignalsView(APIView):
    @extend_schema(
        parameters=[SignalsQuerySerializer], responses={200: SignalsSerializer, **ERRORS}, operation_id="futures_position_signals"
    )
    def get(self, request: Request) -> Response:
        query = _query(SignalsQuerySerializer, request)
        start, end = _range(query)
        return Response(
            futures_position_signals(
                underlying=query["underlying"],
                resolution=resolution_or_error(query["resolution"]),
                start=start,
                end=end,
                threshold_percent=query.get("threshold_percent"),
                contract=query.get("contract"),
            )
        )


class RolloverMetricsView(APIView):
    @extend_schema(
        parameters=[RolloverQuerySerializer], responses={200: RolloverSerializer, **ERRORS}, operation_id="futures_rollover_metrics"
    )
    def get(self, request: Request) -> Response:
        return Response(futures_rollover_metrics(**_query(RolloverQuerySerializer, request)))
