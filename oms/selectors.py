"""Reads of orders, deals and positions: always scoped to one user's accounts.

List filters are django-filter FilterSets over the field names (``account_id``,
``symbol``, ``status``, ``side``, ``strategy_id``) plus ``from``/``to`` on the
list's time field (ISO 8601; ``from`` inclusive, ``to`` exclusive). An invalid
value is refused (422 in the error shape), never silently ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from django.db.models import Count, Min, Prefetch, QuerySet

from accounts.models import User
from brokers.base import BrokerError, Holding
from brokers.models import BrokerAccount
from brokers.registry import broker_for
from brokers.services import broker_account_get_for_user
from core.exceptions import DomainError
from core.filters import IdFilter, IsoDateTimeFilter
from oms.errors import NotFound
from oms.models import FINAL_STATUSES, OPEN_STATUSES, Deal, DealKind, Order, OrderEvent, OrderStatus, Position, PositionStatus, Side

# --- filters ---------------------------------------------------------------------------------


class _AccountListFilter(django_filters.FilterSet):
    account_id = IdFilter(
        field_name="account_id", method="_own_account", help_text="Only this account (one of yours; another's is a 404 not_found)."
    )
    symbol = django_filters.CharFilter(field_name="symbol", help_text="Exact symbol, e.g. BTC/USDT.")
    side = django_filters.ChoiceFilter(field_name="side", choices=Side.choices)
    strategy_id = django_filters.CharFilter(field_name="strategy_id")

    def _own_account(self, queryset: QuerySet, name: str, value: int | None) -> QuerySet:
        # Another user's account (or none) is not found, as its own URL answers,
        # rather than an empty list that says it exists and is empty.
        if value is None:
            return queryset
        account = broker_account_get_for_user(user=self.request.user, account_id=value)  # type: ignore[union-attr]
        return queryset.filter(account_id=account.pk)


def _time_range(filterset: type[django_filters.FilterSet], field: str) -> type[django_filters.FilterSet]:
    # ``from`` is a Python keyword, so the two filters are added after the class body.
    filterset.base_filters["from"] = IsoDateTimeFilter(
        field_name=field, lookup_expr="gte", help_text=f"{field} at or after this ISO 8601 time."
    )
    filterset.base_filters["to"] = IsoDateTimeFilter(field_name=field, lookup_expr="lt", help_text=f"{field} before this ISO 8601 time.")
    return filterset


class OrderFilter(_AccountListFilter):
    status = django_filters.ChoiceFilter(field_name="status", choices=OrderStatus.choices)

    class Meta:
        model = Order
        fields = ["account_id", "symbol", "status", "side", "strategy_id"]


class DealFilter(_AccountListFilter):
    kind = django_filters.ChoiceFilter(field_name="kind", choices=DealKind.choices)
    order_id = IdFilter(field_name="order_id")
    position_id = IdFilter(field_name="position_id")

    class Meta:
        model = Deal
        fields = ["account_id", "symbol", "side", "strategy_id", "kind", "order_id", "position_id"]


class PositionFilter(_AccountListFilter):
    side = django_filters.ChoiceFilter(field_name="side", choices=Position._meta.get_field("side").choices)

    class Meta:
        model = Position
        fields = ["account_id", "symbol", "side", "strategy_id"]


_time_range(OrderFilter, "created_at")
_time_range(DealFilter, "executed_at")
_time_range(PositionFilter, "opened_at")


# --- querysets -------------------------------------------------------------------------------


def orders_of_user(*, user: User, account: BrokerAccount | None = None) -> QuerySet[Order]:
    qs = Order.objects.filter(account__owner=user)
    return qs.filter(account=account) if account is not None else qs


def orders_open(*, user: User) -> QuerySet[Order]:
    return orders_of_user(user=user).filter(status__in=OPEN_STATUSES)


def orders_history(*, user: User) -> QuerySet[Order]:
    """Orders in a final state (filled, canceled, rejected, expired)."""
    return orders_of_user(user=user).filter(status__in=FINAL_STATUSES)


def deals_of_user(*, user: User) -> QuerySet[Deal]:
    return Deal.objects.filter(account__owner=user)


def positions_of_user(*, user: User, status: str | None = None, account: BrokerAccount | None = None) -> QuerySet[Position]:
    qs = Position.objects.filter(account__owner=user)
    if account is not None:
        qs = qs.filter(account=account)
    return qs.filter(status=status) if status else qs


def positions_open(*, user: User, account: BrokerAccount | None = None) -> QuerySet[Position]:
    return positions_of_user(user=user, status=PositionStatus.OPEN, account=account)


def positions_history(*, user: User) -> QuerySet[Position]:
    return positions_of_user(user=user, status=PositionStatus.CLOSED)


def order_for_user(*, user: User, order_id: int) -> Order:
    """One of the user's orders; another user's order looks like none (404)."""
    order = Order.objects.select_related("account").filter(pk=order_id, account__owner=user).first()
    if order is None:
        raise NotFound("No such order.")
    return order


def order_detail(*, user: User, order_id: int) -> Order:
    """The order with its events (and their actors) and its deals prefetched."""
    order = (
        Order.objects.filter(pk=order_id, account__owner=user)
        .prefetch_related(
            Prefetch("events", queryset=OrderEvent.objects.select_related("actor").order_by("id")),
            Prefetch("deals", queryset=Deal.objects.order_by("executed_at", "id")),
        )
        .first()
    )
    if order is None:
        raise NotFound("No such order.")
    return order


# --- operations -------------------------------------------------------------------------------


def orders_unsent_summary() -> tuple[int, datetime | None]:
    """Across all users, for health and metrics: how many accepted orders wait
    for their send (``pending_new``, never sent) and when the oldest was created.
    One aggregate over the (status, created_at) index."""
    row = Order.objects.filter(status=OrderStatus.PENDING_NEW, sent_at__isnull=True).aggregate(count=Count("id"), oldest=Min("created_at"))
    return row["count"], row["oldest"]


# --- broker reads ------------------------------------------------------------------------------


class BrokerUnavailable(DomainError):
    """The broker did not answer a read; nothing changed. 502: the upstream failed, not us."""

    status_code = 502
    code = "broker_unavailable"
    default_message = "The broker did not answer; try again."
    permanent = False


def account_holdings(*, account: BrokerAccount) -> list[Holding]:
    """The broker's holdings (long-term positions, e.g. delivery stocks). Never inside a transaction."""
    try:
        return list(broker_for(account).holdings())
    except BrokerError as exc:
        raise BrokerUnavailable(f"The broker did not answer: {exc.message}" if exc.message else None) from exc


# --- chart marks -------------------------------------------------------------------------------

MAX_MARKS = 1000
_LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z: datetime's range


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(min(max(seconds, 0), _LAST_SECOND), tz=UTC)


def fills_marks(*, user: Any, symbol: str, start: int, end: int, resolution: str) -> list[dict[str, Any]]:
    """The user's fills of ``symbol`` as TradingView UDF marks (``start <= time < end``,
    unix seconds): green B for buys, red S for sells. The newest ``MAX_MARKS``."""
    if user is None or not getattr(user, "is_authenticated", False):
        return []  # a public datafeed: an anonymous chart has no fills
    deals = (
        Deal.objects.filter(
            account__owner=user,
            symbol=symbol,
            kind=DealKind.TRADE,
            executed_at__gte=_utc(start),
            executed_at__lt=_utc(end),
        )
        .order_by("-executed_at", "-id")
        .values_list("pk", "executed_at", "side", "qty", "price", "order_id", "account_id")[:MAX_MARKS]
    )
    marks = []
    for pk, executed_at, side, qty, price, order_id, account_id in reversed(list(deals)):
        buy = side == Side.BUY
        marks.append(
            {
                "id": f"deal-{pk}",
                "time": int(executed_at.timestamp()),
                "color": "green" if buy else "red",
                "text": f"{'Buy' if buy else 'Sell'} {qty.normalize():f} @ {price.normalize():f} (order #{order_id}, account #{account_id})",
                "label": "B" if buy else "S",
                "labelFontColor": "white",
                "minSize": 14,
            }
        )
    return marks
