"""The OMS REST API: HTTP in, a command or a selector, HTTP out.

Every write is a command run by ``oms.services.commands`` (the same rules,
idempotency and results as the WebSocket ``command`` op and the CLI): the
views only shape the body into a command and the outcome into a response.
Another user's account, order, position or deal answers 404.
"""

from __future__ import annotations

from typing import Any, cast

from django.db.models import Model, QuerySet
from django.http import HttpResponseBase
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from brokers.models import BrokerAccount
from core.renderers import JSONRenderer
from oms import selectors
from oms.api import serializers as s
from oms.api.csv import csv_response
from oms.api.schema import CommandOrBatchSerializer, CommandResultOrBatchSerializer
from oms.errors import InvalidInput
from oms.models import Deal, Order, Position, Source
from oms.services.commands import Command, Outcome, account_for_user, command_for, commands_from_wire, commands_run
from oms.services.funds import funds_payload
from oms.services.send import account_check_configured
from oms.services.sync import account_sync_request
from oms.specs import (
    BatchOrdersPayload,
    EmptyPayload,
    OrderChangeBody,
    OrderRef,
    ReassignBody,
    SendOrderPayload,
    spec_context,
    spec_parse,
)
from oms.upstream_ws import upstream_ws_status

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

_ERRORS = {code: s.ErrorSerializer for code in (401, 403, 404, 409, 422)}
_IDEMPOTENCY = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="At most once per key and account: a replay answers the stored status and body with "
    "`Idempotent-Replayed: true`; the same key with another body is 422, one still in flight 409.",
)
_CSV = OpenApiParameter(
    "format", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=["json", "csv"], description="csv: every matching row, streamed."
)
_COMMAND_RESULT = OpenApiResponse(
    s.CommandResultSerializer, description="The command has committed; later states arrive by GET or WebSocket."
)
_COMMAND_RESULTS = OpenApiResponse(s.CommandResultSerializer(many=True), description="One result per command, in order.")


def _idempotency_key(request: Request) -> str | None:
    return request.headers.get(IDEMPOTENCY_HEADER) or None


def _command_response(outcome: Outcome) -> Response:
    headers = {REPLAYED_HEADER: "true"} if outcome.replayed else None
    return Response(outcome.body, status=outcome.status_code, headers=headers)


def _route_command(name: str, body: Any, account: BrokerAccount, **context: Any) -> Command:
    """A command from an account-scoped route: the body is the payload without
    the envelope (errors name its fields as sent); ``context`` adds what the
    path names (the order id)."""
    return command_for(account=account, command=name, payload=body, context=context)


def _run(request: Request, account: BrokerAccount, commands: list[Command], *, shape: str = "object") -> Response:
    outcome = commands_run(
        account=account,
        commands=commands,
        actor=request.user,  # type: ignore[arg-type]
        source=Source.REST,
        idempotency_key=_idempotency_key(request),
        shape=shape,
    )
    return _command_response(outcome)


def _empty_body(request: Request) -> None:
    spec_parse(EmptyPayload, request.data if request.data is not None else {})


def _account(request: Request, account_id: int) -> BrokerAccount:
    return account_for_user(user=request.user, account_id=account_id)  # type: ignore[arg-type]


# --- commands ----------------------------------------------------------------------------------


class CommandsView(APIView):
    throttle_scope = "orders"

    @extend_schema(
        operation_id="oms_commands",
        request=CommandOrBatchSerializer,
        parameters=[_IDEMPOTENCY],
        responses={
            202: CommandResultOrBatchSerializer,
            **_ERRORS,
        },
        description="One command object answers one result object; an array (one account, validated whole: "
        "one invalid, none run) answers an array.",
    )
    def post(self, request: Request) -> Response:
        raw = request.data
        if not isinstance(raw, dict | list):
            raise InvalidInput("The body is a command object or an array of them.", fields={"non_field_errors": ["An object or array."]})
        outcome = commands_from_wire(user=request.user, raw=raw, source=Source.REST, idempotency_key=_idempotency_key(request))  # type: ignore[arg-type]
        return _command_response(outcome)


class ReassignView(APIView):
    throttle_scope = "orders"

    @extend_schema(
        operation_id="oms_reassign",
        request=ReassignBody,
        parameters=[_IDEMPOTENCY],
        responses={202: _COMMAND_RESULT, **_ERRORS},
        description="Move deals to another strategy and/or position (internal reassign bookings; the deals stay).",
    )
    def post(self, request: Request) -> Response:
        parsed = spec_parse(ReassignBody, request.data)
        account = _account(request, parsed.account_id)
        original = {k: v for k, v in request.data.items() if k != "account_id"}
        return _run(request, account, [Command(command="reassign", spec=parsed.spec, original=original)])


# --- lists -------------------------------------------------------------------------------------


class _CsvAware:
    """``?format=csv`` streams the list; errors stay JSON in the error shape."""

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[BaseRenderer, str]:
        if request.query_params.get("format") == "csv":
            renderer = JSONRenderer()
            return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)  # type: ignore[misc]


class _ListView(GenericAPIView):
    filter_backends = [DjangoFilterBackend]
    model: type[Model]
    csv_name: str | None = None  # set: ``?format=csv`` is offered

    def rows(self) -> QuerySet:
        """The user's rows (a selector)."""
        raise NotImplementedError

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return self.model._default_manager.none()
        return self.rows()

    def get(self, request: Request, **kwargs: Any) -> HttpResponseBase:
        queryset = self.filter_queryset(self.get_queryset())
        if self.csv_name and request.query_params.get("format") == "csv":
            serializer = cast(type[s.PayloadSerializer], self.get_serializer_class())
            return csv_response(
                queryset.order_by("id"), columns=serializer.columns(), payload_of=serializer.payload_of, filename=f"{self.csv_name}.csv"
            )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


def _list_schema(name: str, serializer: type, *, csv: bool = False, description: str = "") -> Any:
    responses: dict[Any, Any] = {(200, "application/json"): serializer(many=True), **_ERRORS}
    if csv:
        responses[(200, "text/csv")] = OpenApiResponse(OpenApiTypes.STR, description="`?format=csv`: a header row, then every row.")
    return extend_schema(operation_id=name, parameters=[_CSV] if csv else [], responses=responses, description=description)


class OpenOrdersView(_CsvAware, _ListView):
    model = Order
    serializer_class = s.OrderSerializer
    filterset_class = selectors.OrderFilter
    csv_name = "orders-open"

    def rows(self) -> QuerySet:
        return selectors.orders_open(user=self.request.user)  # type: ignore[arg-type]

    @_list_schema("oms_orders_open", s.OrderSerializer, csv=True, description="Working orders of your accounts.")
    def get(self, request: Request, **kwargs: Any) -> HttpResponseBase:
        return super().get(request, **kwargs)


class OrderHistoryView(_CsvAware, _ListView):
    model = Order
    serializer_class = s.OrderSerializer
    filterset_class = selectors.OrderFilter
    csv_name = "orders-history"

    def rows(self) -> QuerySet:
        return selectors.orders_history(user=self.request.user)  # type: ignore[arg-type]

    @_list_schema(
        "oms_orders_history", s.OrderSerializer, csv=True, description="Orders in a final state: filled, canceled, rejected, expired."
    )
    def get(self, request: Request, **kwargs: Any) -> HttpResponseBase:
        return super().get(request, **kwargs)


class DealsView(_CsvAware, _ListView):
    model = Deal
    serializer_class = s.DealSerializer
    filterset_class = selectors.DealFilter
    csv_name = "deals"

    def rows(self) -> QuerySet:
        return selectors.deals_of_user(user=self.request.user)  # type: ignore[arg-type]

    @_list_schema("oms_deals", s.DealSerializer, csv=True, description="Fills and internal bookings; from/to on executed_at.")
    def get(self, request: Request, **kwargs: Any) -> HttpResponseBase:
        return super().get(request, **kwargs)


class OpenPositionsView(_ListView):
    model = Position
    serializer_class = s.PositionSerializer
    filterset_class = selectors.PositionFilter

    def rows(self) -> QuerySet:
        return selectors.positions_open(user=self.request.user)  # type: ignore[arg-type]

    @_list_schema("oms_positions_open", s.PositionSerializer, description="Open positions with P&L; from/to on opened_at.")
    def get(self, request: Request, **kwargs: Any) -> HttpResponseBase:
        return super().get(request, **kwargs)


class PositionHistoryView(_ListView):
    model = Position
    serializer_class = s.PositionSerializer
    filterset_class = selectors.PositionFilter

    def rows(self) -> QuerySet:
        return selectors.positions_history(user=self.request.user)  # type: ignore[arg-type]

    @_list_schema("oms_positions_history", s.PositionSerializer, description="Closed positions; from/to on opened_at.")
    def get(self, request: Request, **kwargs: Any) -> HttpResponseBase:
        return super().get(request, **kwargs)


# --- account-scoped ----------------------------------------------------------------------------


class AccountOrdersView(_CsvAware, _ListView):
    model = Order
    serializer_class = s.OrderSerializer
    filterset_class = selectors.OrderFilter
    csv_name = "orders"
    throttle_scope = "orders"

    def rows(self) -> QuerySet:
        account = _account(self.request, self.kwargs["pk"])
        return selectors.orders_of_user(user=self.request.user, account=account)  # type: ignore[arg-type]

    @_list_schema("accounts_orders_list", s.OrderSerializer, csv=True, description="Every order of the account.")
    def get(self, request: Request, **kwargs: Any) -> HttpResponseBase:
        return super().get(request, **kwargs)

    @extend_schema(
        operation_id="accounts_orders_send",
        request=SendOrderPayload,
        parameters=[_IDEMPOTENCY],
        responses={202: _COMMAND_RESULT, **_ERRORS},
        description="send_order: written as pending_new and committed before it is sent to the broker.",
    )
    def post(self, request: Request, pk: int) -> Response:
        account = _account(request, pk)
        return _run(request, account, [_route_command("send_order", request.data, account)])


class AccountBatchOrdersView(APIView):
    throttle_scope = "orders"

    @extend_schema(
        operation_id="accounts_batch_orders",
        request=BatchOrdersPayload,
        parameters=[_IDEMPOTENCY],
        responses={202: _COMMAND_RESULTS, **_ERRORS},
        description="Several send_order payloads, atomic: one invalid, none written (422 naming orders[i]).",
    )
    def post(self, request: Request, pk: int) -> Response:
        account = _account(request, pk)
        specs = spec_parse(
            BatchOrdersPayload, request.data, context=spec_context(account), message="An order of the batch is not valid; none was sent."
        )
        commands = [Command(command="send_order", spec=spec, original=raw) for spec, raw in zip(specs, request.data["orders"], strict=True)]
        return _run(request, account, commands, shape="array")


class OrderDetailView(APIView):
    @extend_schema(operation_id="orders_retrieve", responses={200: s.OrderDetailSerializer, **_ERRORS})
    def get(self, request: Request, pk: int) -> Response:
        order = selectors.order_detail(user=request.user, order_id=pk)  # type: ignore[arg-type]
        return Response(s.OrderDetailSerializer(order).data)


class OrderCancelView(APIView):
    throttle_scope = "orders"

    @extend_schema(
        operation_id="orders_cancel",
        request=EmptyPayload,
        parameters=[_IDEMPOTENCY],
        responses={202: _COMMAND_RESULT, **_ERRORS},
        description="cancel_order (allowed while trading is disabled). 409 when the order is final or still on its way.",
    )
    def post(self, request: Request, pk: int) -> Response:
        order = selectors.order_for_user(user=request.user, order_id=pk)  # type: ignore[arg-type]
        _empty_body(request)
        command = Command(command="cancel_order", spec=OrderRef(order_id=order.pk), original={"order_id": order.pk})
        return _run(request, order.account, [command])


class OrderChangeView(APIView):
    throttle_scope = "orders"

    @extend_schema(
        operation_id="orders_change",
        request=OrderChangeBody,
        parameters=[_IDEMPOTENCY],
        responses={202: _COMMAND_RESULT, **_ERRORS},
        description="change_order: a new qty, price and/or stop_price of a working order.",
    )
    def post(self, request: Request, pk: int) -> Response:
        order = selectors.order_for_user(user=request.user, order_id=pk)  # type: ignore[arg-type]
        spec = spec_parse(OrderChangeBody, request.data if request.data is not None else {}, context={"order_id": order.pk})
        command = Command(command="change_order", spec=spec, original={**request.data, "order_id": order.pk})
        return _run(request, order.account, [command])


class AccountPositionsView(_ListView):
    model = Position
    serializer_class = s.PositionSerializer
    filterset_class = selectors.PositionFilter

    def rows(self) -> QuerySet:
        account = _account(self.request, self.kwargs["pk"])
        return selectors.positions_open(user=self.request.user, account=account)  # type: ignore[arg-type]

    @_list_schema("accounts_positions", s.PositionSerializer, description="Open positions of the account with P&L.")
    def get(self, request: Request, **kwargs: Any) -> HttpResponseBase:
        return super().get(request, **kwargs)


class AccountHoldingsView(APIView):
    @extend_schema(
        operation_id="accounts_holdings",
        responses={200: s.HoldingListSerializer, 502: s.ErrorSerializer, **_ERRORS},
        description="The broker's holdings, asked now. 502 broker_unavailable when the broker does not answer.",
    )
    def get(self, request: Request, pk: int) -> Response:
        account = _account(request, pk)
        account_check_configured(account)
        holdings = selectors.account_holdings(account=account)
        return Response({"results": s.HoldingSerializer(holdings, many=True).data, "next": None})


class AccountFundsView(APIView):
    @extend_schema(
        operation_id="accounts_funds",
        responses={200: s.FundsSerializer, 502: s.ErrorSerializer, **_ERRORS},
        description="The account's money as the broker reports it now: totals in the base currency (`currency`: cash, margin "
        "used and available, equity, buying power), the balance of each currency held and the rates used (one unit of each "
        "currency in the base currency); money rounded to each currency's minor units. The same object as the `funds:` "
        "stream. 502 broker_unavailable when it does not answer.",
    )
    def get(self, request: Request, pk: int) -> Response:
        account = _account(request, pk)
        account_check_configured(account)
        funds = funds_payload(account)
        if funds is None:
            raise selectors.BrokerUnavailable()
        return Response(funds)


class AccountSyncView(APIView):
    @extend_schema(
        operation_id="accounts_sync",
        request=EmptyPayload,
        responses={
            200: OpenApiResponse(s.SyncSummarySerializer, description="Synced now (the embedded default runs it in the request)."),
            202: OpenApiResponse(s.SyncQueuedSerializer, description="Queued for a worker."),
            503: s.ErrorSerializer,
            **_ERRORS,
        },
        description="Sync the account with its broker: funds, holdings, positions, open orders and the day's fills (the first "
        "sync books what the broker already holds as external deals). One sync per account at a time: one asked while another "
        "runs is skipped (`outcome: skipped`).",
    )
    def post(self, request: Request, pk: int) -> Response:
        account = _account(request, pk)
        _empty_body(request)
        account_check_configured(account)
        summary = account_sync_request(account.pk)
        if summary is None:
            return Response({"account_id": account.pk, "status": "queued"}, status=status.HTTP_202_ACCEPTED)
        return Response(s.SyncSummarySerializer(summary).data)


class AccountCancelAllView(APIView):
    throttle_scope = "orders"

    @extend_schema(
        operation_id="accounts_cancel_all",
        request=EmptyPayload,
        parameters=[_IDEMPOTENCY],
        responses={202: _COMMAND_RESULT, **_ERRORS},
        description="cancel_all: ask to cancel every working order (allowed while trading is disabled).",
    )
    def post(self, request: Request, pk: int) -> Response:
        account = _account(request, pk)
        return _run(request, account, [_route_command("cancel_all", request.data, account)])


class AccountFlattenView(APIView):
    throttle_scope = "orders"

    @extend_schema(
        operation_id="accounts_flatten",
        request=EmptyPayload,
        parameters=[_IDEMPOTENCY],
        responses={202: _COMMAND_RESULT, **_ERRORS},
        description=(
            "flatten_all: cancel working orders, then close every open position with a market order. "
            "409 flatten_not_possible (nothing changed) when a position's symbol has no fresh quote."
        ),
    )
    def post(self, request: Request, pk: int) -> Response:
        account = _account(request, pk)
        return _run(request, account, [_route_command("flatten_all", request.data, account)])


# --- the upstream Kite backend's WebSocket status --------------------------------------------


class WsStatusView(APIView):
    @extend_schema(
        operation_id="ws_status",
        responses={200: s.WsStatusSerializer, **_ERRORS},
        description="Open WebSocket connections across processes: per endpoint (the gateway /api/v1/ws and the upstream "
        "orders paths /api/v1/ws/orders[/{account_id}]) and, for each of your accounts, the orders-path connections streaming it.",
    )
    def get(self, request: Request) -> Response:
        return Response(s.WsStatusSerializer(upstream_ws_status(request.user)).data)  # type: ignore[arg-type]
