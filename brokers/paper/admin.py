"""Read-only views of the paper books: the venue's state is changed only by
its services (orders through the OMS, matching by the quote listener, staff
deposits and withdrawals through ``paper_ledger_adjust``: the action "Deposit
or withdraw" on broker accounts)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from brokers.models import BrokerAccount, BrokerKind
from brokers.paper.models import PaperAccount, PaperBalance, PaperFill, PaperLedgerEntry, PaperOrder, PaperPosition
from brokers.paper.services import paper_ledger_adjust
from core.exceptions import DomainError


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


class PaperBalanceInline(admin.TabularInline):
    model = PaperBalance
    fields = ("currency", "amount", "updated_at")
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
    inlines = [PaperBalanceInline, PaperPositionInline]


@admin.register(PaperLedgerEntry)
class PaperLedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "created_at", "kind", "currency", "amount", "rate", "trade_id", "note")
    list_filter = ("kind", "currency")
    search_fields = ("trade_id", "note", "account__account__label")
    list_select_related = ("account",)
    date_hierarchy = "created_at"


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


class LedgerAdjustForm(forms.Form):
    currency = forms.CharField(max_length=10, help_text="Any currency code, e.g. KRW, INR, USDT.")
    amount = forms.DecimalField(max_digits=28, decimal_places=10, help_text="Positive: a deposit; negative: a withdrawal.")
    note = forms.CharField(max_length=200, required=False)


@admin.action(description="Deposit or withdraw (paper accounts)", permissions=["change"])
def paper_ledger_adjust_action(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[BrokerAccount]
) -> HttpResponse | None:
    accounts = list(queryset.order_by("id"))
    if any(a.kind != BrokerKind.PAPER for a in accounts):
        modeladmin.message_user(request, "Only paper accounts have a ledger to deposit to or withdraw from.", messages.ERROR)
        return None
    form = LedgerAdjustForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        amount: Decimal = form.cleaned_data["amount"]
        done = 0
        for account in accounts:
            try:
                paper_ledger_adjust(
                    account_id=account.pk, currency=form.cleaned_data["currency"], amount=amount, note=form.cleaned_data["note"]
                )
                done += 1
            except DomainError as exc:
                modeladmin.message_user(request, f"{account}: {exc.message}", messages.ERROR)
        if done:
            verb = "Deposited" if amount > 0 else "Withdrew"
            code = form.cleaned_data["currency"].strip().upper()
            modeladmin.message_user(request, f"{verb} {abs(amount)} {code} on {done} account(s).", messages.SUCCESS)
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Deposit or withdraw",
        "accounts": accounts,
        "form": form,
        "opts": modeladmin.model._meta,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/paper/ledger_adjust.html", context)


def _extend_account_admin() -> None:
    # The deposit/withdraw action belongs to the paper venue: it adds it to the account admin.
    account_admin = admin.site.get_model_admin(BrokerAccount)
    actions = tuple(account_admin.actions or ())
    if paper_ledger_adjust_action not in actions:
        account_admin.actions = (*actions, paper_ledger_adjust_action)


_extend_account_admin()
