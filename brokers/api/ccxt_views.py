"""The upstream CCXT OMS's pass-through endpoints, kept for its users (README,
"CCXT pass-through"): read-only unified ccxt calls on one's CCXT accounts.
Thin: the rules are in ``brokers.ccxt_passthrough``. Both are POSTs, so a
read-scope key gets 403 (DESIGN's scope rule)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from brokers.ccxt_passthrough import BATCH_MAX, READ_CALLS, ccxt_batch, ccxt_call
from core.exceptions import InvalidInput
from core.serializers import ErrorSerializer


class CcxtCallBody(serializers.Serializer):
    args = serializers.ListField(
        child=serializers.JSONField(), required=False, max_length=8, help_text="Positional arguments, as ccxt takes them."
    )
    kwargs = serializers.DictField(
        child=serializers.JSONField(), required=False, help_text='Keyword arguments (e.g. {"symbol": "BTC/USDT"}).'
    )


class CcxtCallAnswer(serializers.Serializer):
    ok = serializers.BooleanField()
    result = serializers.JSONField(help_text="ccxt's answer as ccxt gives it: numbers are JSON numbers (not decimal strings); NaN is null.")


class CcxtBatchItem(serializers.Serializer):
    account_id = serializers.IntegerField(min_value=1)
    func = serializers.CharField(max_length=64)
    args = serializers.ListField(child=serializers.JSONField(), required=False)
    kwargs = serializers.DictField(child=serializers.JSONField(), required=False)


class CcxtBatchError(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class CcxtBatchResult(serializers.Serializer):
    index = serializers.IntegerField()
    ok = serializers.BooleanField()
    result = serializers.JSONField(required=False)
    error = CcxtBatchError(required=False)


class CcxtBatchAnswer(serializers.Serializer):
    results = CcxtBatchResult(many=True)


_ERRORS = {
    403: OpenApiResponse(
        ErrorSerializer, description="A read-scope key, or a call that changes orders, moves money or settings (ccxt_call_refused)."
    ),
    404: OpenApiResponse(
        ErrorSerializer, description="No such account of yours, not a read call (ccxt_call_unknown), or the exchange has no such order."
    ),
    409: OpenApiResponse(
        ErrorSerializer,
        description="The account is not set up (broker_not_configured) or the exchange refused its credentials (broker_auth).",
    ),
    422: OpenApiResponse(
        ErrorSerializer, description="Bad arguments, not a CCXT account (not_a_ccxt_account), or the exchange refused the request."
    ),
    502: OpenApiResponse(ErrorSerializer, description="The exchange failed or could not be reached."),
    503: OpenApiResponse(ErrorSerializer, description="Rate limited (ours or the exchange's): retry after Retry-After."),
    504: OpenApiResponse(ErrorSerializer, description="The exchange did not answer in time."),
}
_CALLS = ", ".join(sorted(READ_CALLS))


def _body(request: Request) -> dict:
    data = request.data if request.data is not None else {}
    if not isinstance(data, dict):
        raise InvalidInput('The body is an object {"args": [...], "kwargs": {...}}.', fields={"non_field_errors": ["An object."]})
    unknown = set(data) - {"args", "kwargs"}
    if unknown:
        raise InvalidInput(
            f"Unknown fields: {', '.join(sorted(map(str, unknown)))[:100]}.",
            fields={key: ["Unknown field."] for key in sorted(map(str, unknown))[:10]},
        )
    return data


class CcxtCallView(APIView):
    throttle_scope = "orders"

    @extend_schema(
        operation_id="ccxt_call",
        parameters=[
            OpenApiParameter(
                "func", OpenApiTypes.STR, OpenApiParameter.PATH, description="A read-only unified ccxt call (snake_case or camelCase)."
            )
        ],
        request=CcxtCallBody,
        responses={200: CcxtCallAnswer, **_ERRORS},
        description="Run one read-only unified ccxt call on your CCXT account and answer ccxt's result. Allowed: " + _CALLS + ".",
    )
    def post(self, request: Request, pk: int, func: str) -> Response:
        body = _body(request)
        result = ccxt_call(user=request.user, account_id=pk, func=func, args=body.get("args"), kwargs=body.get("kwargs"))  # type: ignore[arg-type]
        return Response({"ok": True, "result": result})


class CcxtBatchView(APIView):
    throttle_scope = "orders"

    @extend_schema(
        operation_id="ccxt_batch",
        request=CcxtBatchItem(many=True),
        responses={200: CcxtBatchAnswer, **_ERRORS},
        description=f"At most {BATCH_MAX} read-only calls, validated whole first (one refused, none run), then run in order, "
        "paced per account; each answers {index, ok, result} or {index, ok: false, error}.",
    )
    def post(self, request: Request) -> Response:
        return Response({"results": ccxt_batch(user=request.user, raw=request.data)})  # type: ignore[arg-type]
