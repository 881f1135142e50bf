"""The upstream KIS terminal's endpoints, kept for its users: the state of the
access token and WebSocket approval key, and forced refreshes.

``/auth/kis/...`` acts on the caller's KIS account (or ``?account_id=``);
``/accounts/{id}/kis/...`` on the one named. A read-scope API key may read the
status; refreshing needs the trade scope (the project's default permissions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from brokers.api.kis_serializers import EmptyBodySerializer, KisAccountQuerySerializer, KisStatusSerializer
from brokers.kis_accounts import kis_access_token_refresh, kis_account_for_user, kis_approval_key_refresh, kis_token_status
from brokers.models import BrokerAccount
from core.serializers import ErrorSerializer

_ACCOUNT_ID = OpenApiParameter(
    "account_id", OpenApiTypes.INT, OpenApiParameter.QUERY, description="The KIS account; needed when you have none or several."
)
_NOT_ONE = OpenApiResponse(
    ErrorSerializer, description="No KIS account, or several: name one with ?account_id= (kis_account_required, kis_account_ambiguous)."
)
_NOT_KIS = OpenApiResponse(ErrorSerializer, description="No such account of yours, or not a KIS account.")
_REFRESH_ERRORS = {
    409: OpenApiResponse(
        ErrorSerializer, description="Not configured (broker_not_configured), or KIS refused the credentials (broker_auth)."
    ),
    422: OpenApiResponse(ErrorSerializer, description="Unknown body fields, or KIS rejected the request (broker_rejected)."),
    503: OpenApiResponse(
        ErrorSerializer,
        description="Inside a minute of the last issue for this app key (KIS's rule), rate limited, or KIS unreachable: retry after Retry-After.",
    ),
    504: OpenApiResponse(ErrorSerializer, description="KIS did not answer in time."),
}


def _account(request: Request, pk: int | None) -> BrokerAccount:
    if pk is None:
        query = KisAccountQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        pk = query.validated_data.get("account_id")
    return kis_account_for_user(user=request.user, account_id=pk)  # type: ignore[arg-type]


def _empty_body(request: Request) -> None:
    EmptyBodySerializer(data=request.data if request.data is not None else {}).is_valid(raise_exception=True)


class _KisStatus(APIView):
    def get(self, request: Request, pk: int | None = None) -> Response:
        return Response(KisStatusSerializer(kis_token_status(account=_account(request, pk))).data)


class _KisRefresh(APIView):
    refresh: Callable[..., dict[str, Any]]

    def post(self, request: Request, pk: int | None = None) -> Response:
        account = _account(request, pk)
        _empty_body(request)
        return Response(KisStatusSerializer(type(self).refresh(account=account)).data)


_STATUS_DOC = "KIS access token and WebSocket approval key: state and expiry, never the values (no call to KIS)."
_ISSUE_ACCESS_DOC = (
    "Issue a new KIS access token now (at most one a minute per app key: else 503 with Retry-After); answers the new status."
)
_APPROVAL_DOC = "Issue a new KIS WebSocket approval key now (at most one a minute per app key); answers the new status."


class AuthKisStatusView(_KisStatus):
    @extend_schema(
        operation_id="auth_kis_status",
        parameters=[_ACCOUNT_ID],
        responses={200: KisStatusSerializer, 404: _NOT_KIS, 409: _NOT_ONE, 422: ErrorSerializer},
        description=_STATUS_DOC + " For your KIS account, or the one in ?account_id=.",
    )
    def get(self, request: Request, pk: int | None = None) -> Response:
        return super().get(request, pk)


class AuthKisTokenRefreshView(_KisRefresh):
    refresh = staticmethod(kis_access_token_refresh)

    @extend_schema(
        operation_id="auth_kis_token_refresh",
        parameters=[_ACCOUNT_ID],
        request=EmptyBodySerializer,
        responses={200: KisStatusSerializer, 404: _NOT_KIS, **_REFRESH_ERRORS},
        description=_ISSUE_ACCESS_DOC + " For your KIS account, or the one in ?account_id= (409 when you have none or several).",
    )
    def post(self, request: Request, pk: int | None = None) -> Response:
        return super().post(request, pk)


class AuthKisApprovalRefreshView(_KisRefresh):
    refresh = staticmethod(kis_approval_key_refresh)

    @extend_schema(
        operation_id="auth_kis_approval_refresh",
        parameters=[_ACCOUNT_ID],
        request=EmptyBodySerializer,
        responses={200: KisStatusSerializer, 404: _NOT_KIS, **_REFRESH_ERRORS},
        description=_APPROVAL_DOC + " For your KIS account, or the one in ?account_id= (409 when you have none or several).",
    )
    def post(self, request: Request, pk: int | None = None) -> Response:
        return super().post(request, pk)


class AccountKisStatusView(_KisStatus):
    @extend_schema(operation_id="accounts_kis_status", responses={200: KisStatusSerializer, 404: _NOT_KIS}, description=_STATUS_DOC)
    def get(self, request: Request, pk: int | None = None) -> Response:
        return super().get(request, pk)


class AccountKisTokenRefreshView(_KisRefresh):
    refresh = staticmethod(kis_access_token_refresh)

    @extend_schema(
        operation_id="accounts_kis_token_refresh",
        request=EmptyBodySerializer,
        responses={200: KisStatusSerializer, 404: _NOT_KIS, **_REFRESH_ERRORS},
        description=_ISSUE_ACCESS_DOC,
    )
    def post(self, request: Request, pk: int | None = None) -> Response:
        return super().post(request, pk)


class AccountKisApprovalRefreshView(_KisRefresh):
    refresh = staticmethod(kis_approval_key_refresh)

    @extend_schema(
        operation_id="accounts_kis_approval_refresh",
        request=EmptyBodySerializer,
        responses={200: KisStatusSerializer, 404: _NOT_KIS, **_REFRESH_ERRORS},
        description=_APPROVAL_DOC,
    )
    def post(self, request: Request, pk: int | None = None) -> Response:
        return super().post(request, pk)
