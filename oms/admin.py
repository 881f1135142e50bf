"""Staff views of orders, deals and positions: read-only.

Financial rows are never added, changed or deleted here; staff act only
through actions, which call the same services as every other entry point
(source ``admin``, the staff user as actor). The kill switch lives on the
broker account admin; the OMS adds "reconcile" to it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from brokers import admin as brokers_admin  # noqa: F401  (registers BrokerAccount before we extend it)
from brokers.models import BrokerAccount
from core.exceptions import DomainError
from oms.models import Deal, FundsProjection, IdempotencyKey, Order, OrderEvent, Position, Source
from oms.services.commands import Command, commands_run
from oms.specs import OrderRef


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OrderEventInline(ReadOnlyInline):
    model = OrderEvent
    fields = ("created_at", "kind", "from_status", "to_status", "actor", "source", "message", "payload")
    readonly_fields = fields
    ordering = ("id",)


class DealInline(ReadOnlyInline):
    model = Deal
    fk_name = "order"
    fields = ("id", "executed_at", "side", "qty", "price", "fee", "kind", "position", "broker_trade_id")
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "account",
        "symbol",
        "side",
        "order_type",
        "qty",
        "price",
        "status",
        "filled_qty",
        "avg_fill_price",
        "strategy_id",
        "source",
        "created_at",
    )
    list_filter = ("status", "side", "order_type", "time_in_force", "source", "account__kind", "created_at")
    search_fields = ("=id", "client_order_id", "broker_order_id", "symbol", "strategy_id", "account__label", "account__owner__email")
    list_select_related = ("account",)
    date_hierarchy = "created_at"
    inlines = (OrderEventInline, DealInline)
    actions = ("cancel_selected_orders",)

    @admin.action(description="Cancel selected orders")
    def cancel_selected_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        canceled, refused = 0, []
        for order in queryset.order_by("id"):
            try:
                command = Command(command="cancel_order", spec=OrderRef(order_id=order.pk))
                commands_run(account=order.account, commands=[command], actor=request.user, source=Source.ADMIN)  # type: ignore[arg-type]
            except DomainError as exc:
                refused.append(f"#{order.pk}: {exc.message}")
            else:
                canceled += 1
        if canceled:
            self.message_user(request, f"Cancel requested for {canceled} order(s).", messages.SUCCESS)
        if refused:
            self.message_user(request, "Not canceled — " + "; ".join(refused), messages.WARNING)


@admin.register(Deal)
class DealAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "account",
        "symbol",
        "side",
        "qty",
        "price",
        "fee",
        "fee_currency",
        "kind",
        "order",
        "position",
        "strategy_id",
        "executed_at",
    )
    list_filter = ("kind", "side", "account__kind", "executed_at")
    search_fields = ("=id", "symbol", "broker_trade_id", "strategy_id", "account__label", "account__owner__email")
    list_select_related = ("account",)
    date_hierarchy = "executed_at"


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "account",
        "symbol",
        "strategy_id",
        "side",
        "qty",
        "max_qty",
        "avg_price",
        "currency",
        "realized_pnl",
        "unrealized_pnl",
        "fees",
        "last_price",
        "status",
        "opened_at",
        "closed_at",
    )
    list_filter = ("status", "side", "account__kind")
    search_fields = ("=id", "symbol", "strategy_id", "account__label", "account__owner__email")
    list_select_related = ("account",)


@admin.register(FundsProjection)
class FundsProjectionAdmin(ReadOnlyAdmin):
    list_display = ("account", "currency", "buying_power", "updated_at")
    list_select_related = ("account",)


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "key", "response_status", "created_at")
    search_fields = ("key",)
    list_select_related = ("account",)


@admin.action(description="Reconcile selected accounts with their brokers")
def reconcile_selected_accounts(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[BrokerAccount]) -> None:
    try:
        from oms.tasks import account_reconcile_task
    except ImportError:
        modeladmin.message_user(request, "Reconciliation is not available on this server.", messages.ERROR)
        return
    ids = list(queryset.order_by("id").values_list("pk", flat=True))
    for account_id in ids:
        account_reconcile_task.delay(account_id)
    modeladmin.message_user(request, f"Reconciliation queued for {len(ids)} account(s).", messages.SUCCESS)


def _extend_account_admin() -> None:
    # brokers must not import the OMS, so the OMS adds its action to the account admin.
    account_admin = admin.site.get_model_admin(BrokerAccount)
    actions = tuple(account_admin.actions or ())
    if reconcile_selected_accounts not in actions:
        account_admin.actions = (*actions, reconcile_selected_accounts)


_extend_account_admin()
