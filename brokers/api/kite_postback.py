"""Kite's postbacks (``POST /api/v1/brokers/kite/postback``): public, no
session, no CSRF; the body's checksum is the authentication
(``brokers.kite_postbacks``)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response

from brokers.kite_postbacks import kite_postback_receive
from core.serializers import ErrorSerializer
from core.views import PublicView

_ACCEPTED = inline_serializer(
    "KitePostbackAccepted",
    {
        "order_id": serializers.CharField(),
        "status": serializers.CharField(help_text="Kite's status in the postback."),
        "accepted": serializers.BooleanField(),
    },
)


class _RawBody(BaseParser):
    """The body untouched: the checksum is checked on what Kite sent."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):  # type: ignore[no-untyped-def]
        return None


class KitePostbackView(PublicView):
    parser_classes = [_RawBody]

    @extend_schema(
        operation_id="kite_postback",
        request=OpenApiTypes.OBJECT,
        responses={
            200: _ACCEPTED,
            400: OpenApiResponse(ErrorSerializer, description="Not JSON."),
            403: OpenApiResponse(ErrorSerializer, description="No Kite account's api secret makes the checksum (invalid_checksum)."),
            413: OpenApiResponse(ErrorSerializer, description="Larger than KITE_POSTBACK_MAX_BYTES."),
            422: OpenApiResponse(
                ErrorSerializer, description="Not an order postback (order_id, order_timestamp, status, user_id, checksum)."
            ),
        },
        auth=[],
        description="Kite's order postback (set this URL as the Kite app's postback URL). No credentials: the body's "
        "checksum sha256(order_id + order_timestamp + api_secret) authenticates it, for the accounts whose Kite user id is "
        "its user_id. The order update is applied once (with the ticker's update of the same change, a replay, and "
        "reconciliation); its fills are read from Kite's trades of the order.",
    )
    def post(self, request: Request) -> Response:
        accepted = kite_postback_receive(body=request.body)
        return Response({"order_id": accepted.order_id, "status": accepted.status, "accepted": True})
