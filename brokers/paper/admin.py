"""Read-only views of the paper books: the venue's state is changed only by
its services (orders through the OMS, matching by the quote listener)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from brokers.paper.models import PaperAccount, PaperFill, PaperOrder, PaperPosition


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PaperPositionInline(admin.TabularInline):
    model = PaperPosition
    fields = ("symbol", "qty", "avg_price", "realized_pnl", "updated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PaperAccount)
class PaperAccountAdmin(ReadOnlyAdmin):
    list_display = ("account", "cash", "starting_cash", "fees_paid", "next_order_no", "next_trade_no", "updated_at")
    search_fields = ("account__label", "account__owner__email")
    list_select_related = ("account",)
    exclude = ("market_state",)
    inlines = [PaperPositionInline]


@admin.register(PaperOrder)
class PaperOrderAdmin(ReadOnlyAdmin):
    list_display = (
        "broker_order_id",
        "account",
        "client_order_id",
        "symbol",
        "side",
        "order_type",
        "qty",
        "price",
        "stop_price",
        "time_in_force",
        "status",
        "filled_qty",
        "avg_fill_price",
        "created_at",
    )
    list_filter = ("status", "working", "order_type", "time_in_force", "side")
    search_fields = ("broker_order_id", "client_order_id", "symbol")
    date_hierarchy = "created_at"


@admin.register(PaperFill)
class PaperFillAdmin(ReadOnlyAdmin):
    list_display = ("trade_id", "account", "broker_order_id", "symbol", "side", "qty", "price", "fee", "executed_at")
    list_filter = ("side",)
    search_fields = ("trade_id", "broker_order_id", "client_order_id", "symbol")
    date_hierarchy = "executed_at"


@admin.register(PaperPosition)
class PaperPositionAdmin(ReadOnlyAdmin):
    list_display = ("account", "symbol", "qty", "avg_price", "realized_pnl", "updated_at")
    search_fields = ("symbol",)
