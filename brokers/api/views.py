from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from brokers.api.serializers import BrokerAccountCreateSerializer, BrokerAccountSerializer, BrokerAccountUpdateSerializer
from brokers.models import BrokerAccount
from brokers.services import broker_account_create, broker_account_get_for_user, broker_account_update


class AccountListCreateView(generics.ListAPIView):
    serializer_class = BrokerAccountSerializer
    filterset_fields = ["kind", "environment", "status"]

    def get_queryset(self):  # type: ignore[no-untyped-def]
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
        account = broker_account_update(account=account, **data.validated_data)
        return Response(BrokerAccountSerializer(account).data)
