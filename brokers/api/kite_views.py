"""Logging in to Kite: the terminal's link (``GET /accounts/{id}/kite/login``,
URL name ``kite_login``) redirects to Kite's login page; Kite sends the
browser back to ``GET /brokers/kite/callback`` with the request token and
our signed state, which stores the session (README, "Kite accounts")."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from brokers.kite_accounts import kite_account_for_user, kite_login_complete, kite_login_redirect
from core.serializers import ErrorSerializer

_REDIRECT = OpenApiResponse(description="To Kite's login page (Location), the signed state in redirect_params.")
_LOGGED_IN = inline_serializer(
    "KiteLogin",
    {
        "account_id": serializers.IntegerField(),
        "status": serializers.CharField(help_text="The account's status now (active)."),
        "kite_user_id": serializers.CharField(),
        "expires_at": serializers.DateTimeField(help_text="When the session ends: the next 06:00 in India."),
    },
)


def _query(request: Request, name: str) -> str:
    value = request.query_params.get(name, "")
    return value if isinstance(value, str) else ""


class KiteLoginView(APIView):
    @extend_schema(
        operation_id="accounts_kite_login",
        parameters=[OpenApiParameter("next", OpenApiTypes.STR, OpenApiParameter.QUERY, description="A path of this site to return to.")],
        responses={
            302: _REDIRECT,
            404: OpenApiResponse(ErrorSerializer, description="No such account of yours, or not a Kite account."),
            409: OpenApiResponse(ErrorSerializer, description="The api_key or api_secret is not set (broker_not_configured)."),
            422: OpenApiResponse(ErrorSerializer, description="next is not a path of this site."),
        },
        description="Log in to Kite: redirects to Kite's login page for the account's api_key; Kite sends the browser back "
        "to /api/v1/brokers/kite/callback, which stores the session (until 06:00 India time).",
    )
    def get(self, request: Request, pk: int) -> Response:
        account = kite_account_for_user(user=request.user, account_id=pk)  # type: ignore[arg-type]
        url = kite_login_redirect(account=account, next_path=_query(request, "next"))
        return Response(status=302, headers={"Location": url})


class KiteCallbackView(APIView):
    # Kite sends the browser here: the signed state (the account, its owner,
    # a bounded age) authenticates the request; a signed-in caller must be the owner.
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="brokers_kite_callback",
        parameters=[
            OpenApiParameter("state", OpenApiTypes.STR, OpenApiParameter.QUERY, description="Our signed state (from redirect_params)."),
            OpenApiParameter("request_token", OpenApiTypes.STR, OpenApiParameter.QUERY),
            OpenApiParameter("status", OpenApiTypes.STR, OpenApiParameter.QUERY, description="Kite's: success."),
            OpenApiParameter("action", OpenApiTypes.STR, OpenApiParameter.QUERY, description="Kite's: login."),
            OpenApiParameter("type", OpenApiTypes.STR, OpenApiParameter.QUERY, description="Kite's: login."),
        ],
        responses={
            200: _LOGGED_IN,
            302: OpenApiResponse(description="Logged in: to the path the login named (next)."),
            400: OpenApiResponse(
                ErrorSerializer,
                description="A missing, tampered or foreign state, an expired one (kite_login_expired), a refused request token "
                "or checksum, or another Kite user (kite_login_refused). Nothing is stored.",
            ),
            503: OpenApiResponse(ErrorSerializer, description="Kite could not be reached."),
        },
        description="Where Kite's login returns: exchanges the request token for a session and stores it encrypted.",
    )
    def get(self, request: Request) -> Response:
        login = kite_login_complete(
            state=_query(request, "state"),
            request_token=_query(request, "request_token"),
            status=_query(request, "status") or "success",
            user=request.user,  # type: ignore[arg-type]
        )
        if login.next_path:
            return Response(status=302, headers={"Location": login.next_path})
        return Response(
            {"account_id": login.account.pk, "status": "active", "kite_user_id": login.kite_user_id, "expires_at": login.expires_at}
        )
