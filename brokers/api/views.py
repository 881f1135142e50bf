from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from brokers.api.serializers import (
    AccountStatusSerializer,
    BrokerAccountCreateSerializer,
    BrokerAccountSerializer,
    BrokerAccountUpdateSerializer,
    LedgerEntrySerializer,
)
from brokers.connection import broker_account_connection
from brokers.models import BrokerAccount, BrokerKind
from brokers.paper.models import PaperLedgerEntry
from brokers.paper.selectors import LedgerFilter, paper_ledger_entries
from brokers.services import broker_account_create, broker_account_get_for_user, broker_account_update
from core.exceptions import NotFound
from core.serializers import ErrorSerializer


class AccountListCreateView(generics.ListAPIView):
    serializer_class = BrokerAccountSerializer
    filterset_fields = ["kind", "environment", "status"]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return BrokerAccount.objects.none()
        return BrokerAccount.objects.filter(owner=self.request.user)

    @extend_schema(request=BrokerAccountCreateSerializer, responses={201: BrokerAccountSerializer}, operation_id="accounts_create")
    def post(self, request: Request) -> Response:
        data = BrokerAccountCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = broker_account_create(owner=request.user, **data.validated_data)  # type: ignore[arg-type]
        return Response(BrokerAccountSerializer(account).data, status=status.HTTP_201_CREATED)


class AccountDetailView(APIView):
    @extend_schema(responses=BrokerAccountSerializer, operation_id="accounts_retrieve")
    def get(self, request: Request, pk: int) -> Response:
        account = broker_account_get_for_user(user=request.user, account_id=pk)  # type: ignore[arg-type]
        return Response(BrokerAccountSerializer(account).data)

    @extend_schema(request=BrokerAccountUpdateSerializer, responses=BrokerAccountSerializer, operation_id="accounts_update")
    def patch(self, request: Request, pk: int) -> Response:
        account = broker_account_get_for_user(user=request.user, account_id=pk)  # type: ignore[arg-type]
        data = BrokerAccountUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # Credentials merge into the stored ones (README): PATCH one field, keep the others.
        account = broker_account_update(account=account, merge_credentials=True, **data.validated_data)
        return Response(BrokerAccountSerializer(account).data)


class AccountLedgerView(generics.ListAPIView):
    """The cash ledger of a paper account: every deposit, withdrawal, trade,
    fee, FX conversion and realized P&L, per currency, newest first."""

    serializer_class = LedgerEntrySerializer
    filterset_class = LedgerFilter

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return PaperLedgerEntry.objects.none()
        account = broker_account_get_for_user(user=self.request.user, account_id=self.kwargs["pk"])  # type: ignore[arg-type]
        if account.kind != BrokerKind.PAPER:
            raise NotFound("Only paper accounts keep their ledger here; other brokers report balances in funds.")
        return paper_ledger_entries(account_id=account.pk)

    @extend_schema(operation_id="accounts_ledger_list")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class AccountStatusView(APIView):
    @extend_schema(
        operation_id="accounts_status",
        responses={200: AccountStatusSerializer, 401: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer},
        description="Connection health: status, kill switch, broker tokens (state and expiry, never the secrets), the live feed "
        "(connected, last message, subscriptions, how fills arrive), the last sync (time, duration, error, drift) and the last "
        "error. Reads what the terminal knows; asks the broker nothing.",
    )
    def get(self, request: Request, pk: int) -> Response:
        account = broker_account_get_for_user(user=request.user, account_id=pk)  # type: ignore[arg-type]
        return Response(AccountStatusSerializer(broker_account_connection(account=account)).data)
