"""Staff admin for market data: instruments (edited through the services) and
a read-only bar browser that stays fast on tables of millions of bars."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from marketdata.models import Bar, Instrument
from marketdata.services import INSTRUMENT_FIELDS, instrument_upsert, instruments_set_active
from marketdata.sessions import session_problem, timezone_problem


def _adopt(obj: Instrument, saved: Instrument) -> None:
    """Make the admin's form instance stand for the row the service saved, so
    the admin's log entry, messages and redirect name the real object."""
    for model_field in obj._meta.concrete_fields:
        setattr(obj, model_field.attname, getattr(saved, model_field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


class InstrumentForm(ModelForm):
    """Session and timezone checked as the service checks them, shown on the
    field (the admin supplies the model and fields)."""

    def clean_session(self) -> str:
        return _checked(self.cleaned_data["session"], session_problem)

    def clean_timezone(self) -> str:
        return _checked(self.cleaned_data["timezone"], timezone_problem)


def _checked(value: str, check: Callable[[str], str | None]) -> str:
    problem = check(value)
    if problem is not None:
        raise ValidationError(problem)
    return value


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    form = InstrumentForm
    list_display = (
        "symbol",
        "venue",
        "type",
        "exchange",
        "currency",
        "tick_size",
        "lot_size",
        "multiplier",
        "expiry",
        "strike",
        "option_type",
        "active",
    )
    search_fields = ("symbol", "code", "description", "exchange")
    list_filter = ("venue", "type", "exchange", "active")
    list_select_related = ("underlying",)
    autocomplete_fields = ("underlying",)
    # Venue, code and quote source are set by the venue imports (import_instruments).
    readonly_fields = ("venue", "code", "quote_source", "created_at", "updated_at")
    actions = ("activate", "deactivate")
    fieldsets = (
        (None, {"fields": ("symbol", "description", "type", "exchange", "currency", "active")}),
        ("Trading", {"fields": ("tick_size", "lot_size", "multiplier", "session", "timezone")}),
        ("Derivative", {"fields": ("underlying", "expiry", "strike", "option_type")}),
        ("Option models (as an underlying; empty = the FO_ settings' default)", {"fields": ("risk_free_rate", "dividend_yield")}),
        ("Integration", {"fields": ("venue", "code", "quote_source", "broker_codes", "sim_params")}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Instrument | None = None) -> Any:
        # Orders, deals and positions name instruments by symbol: a rename
        # would orphan them, so the symbol is fixed once created.
        return (*self.readonly_fields, "symbol") if obj is not None else self.readonly_fields

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        # Deleting an instrument would cascade to its bars; deactivate it instead.
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request: HttpRequest, obj: Instrument | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Instrument, form: ModelForm, change: bool) -> None:
        data = form.cleaned_data
        names = form.changed_data if change else list(data)
        fields = {name: data[name] for name in names if name in INSTRUMENT_FIELDS}
        _adopt(obj, instrument_upsert(symbol=obj.symbol, **fields))

    def _set_active(self, request: HttpRequest, queryset: QuerySet[Instrument], active: bool) -> None:
        changed = instruments_set_active(instrument_ids=queryset.filter(active=not active).values_list("pk", flat=True), active=active)
        state = "activated" if active else "deactivated"
        self.message_user(request, f"{changed} instrument(s) {state}.", messages.SUCCESS)

    @admin.action(description="Activate selected instruments", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[Instrument]) -> None:
        self._set_active(request, queryset, active=True)

    @admin.action(description="Deactivate selected instruments", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Instrument]) -> None:
        self._set_active(request, queryset, active=False)


@admin.register(Bar)
class BarAdmin(admin.ModelAdmin):
    """A read-only browser. Bars come from feeds and imports, never from here."""

    list_display = ("instrument", "resolution", "time", "open", "high", "low", "close", "volume")
    list_filter = ("resolution",)
    date_hierarchy = "time"
    search_fields = ("instrument__symbol",)
    list_select_related = ("instrument",)
    # The unique (instrument, resolution, time) index serves this order; the
    # model's "instrument" ordering would sort by the joined symbol instead.
    ordering = ("-instrument_id", "-resolution", "-time")
    # Counting every bar for "N total" is a full scan on millions of rows.
    show_full_result_count = False
    list_per_page = 100
    readonly_fields = ("instrument", "resolution", "time", "open", "high", "low", "close", "volume", "open_interest")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Bar | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Bar | None = None) -> bool:
        return False
