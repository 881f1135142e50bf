"""Staff admin for broker accounts. Every write goes through brokers.services.

Credentials are write-only here: the change page names the stored fields
(``app_key=***``) and offers empty password inputs to replace them; a value is
never rendered back, not even after a validation error, and the encrypted
token is never shown either.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.debug import sensitive_post_parameters

from brokers.base import BrokerError
from brokers.connection import (
    broker_account_feed_state,
    broker_account_sync_notes,
    broker_account_token_refresh,
    broker_account_token_states,
)
from brokers.crypto import CredentialError
from brokers.models import LOGIN_REQUIRED, BrokerAccount, BrokerKind
from brokers.registry import sync_request
from brokers.services import (
    CREDENTIAL_FIELDS,
    DEFAULT_BASE_CURRENCY,
    EDITABLE_FIELDS,
    OPTIONAL_CREDENTIAL_FIELDS,
    broker_account_create,
    broker_account_credential_names,
    broker_account_mask,
    broker_account_set_credentials,
    broker_account_set_status,
    broker_account_set_trading_enabled,
    broker_account_status,
    broker_account_update,
    broker_options_problem,
)
from core.exceptions import DomainError

_INPUT_PREFIX = "credential_"
# Accounts one "Sync now" / "Refresh token now" acts on: each is a broker call made in the request.
ADMIN_ACTION_MAX = 20
_BROKER_FIELDS = ("broker_account_number", "broker_product_code", "broker_user_id", "exchange_id", "broker_options")


def _adopt(obj: models.Model, saved: models.Model) -> None:
    """Make the admin's form instance stand for the row a service saved, so the
    admin's log entry, messages and redirect name the real object."""
    for field in obj._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at is not None else "never"


def _credential_names(kind: str | None) -> tuple[str, ...]:
    """The credential inputs to offer: those of ``kind``, or of every kind (add form)."""
    kinds = [kind] if kind else list(BrokerKind.values)
    names: dict[str, None] = {}
    for k in kinds:
        names.update(dict.fromkeys(CREDENTIAL_FIELDS[k] + OPTIONAL_CREDENTIAL_FIELDS[k]))
    return tuple(names)


def _credential_help(name: str) -> str:
    uses = [
        f"{kind}{'' if name in CREDENTIAL_FIELDS[kind] else ' (optional)'}" for kind in BrokerKind.values if name in _credential_names(kind)
    ]
    return f"Used by: {', '.join(uses)}. Write-only; leave blank to keep the stored value."


class BrokerAccountForm(forms.ModelForm):
    """Account fields plus write-only credential inputs (added per kind by ``_form_for``)."""

    credential_names: tuple[str, ...] = ()

    replace_credentials = forms.BooleanField(
        required=False,
        label="Replace all stored credentials",
        help_text="Discard stored fields not entered above; with no field entered, this clears the credentials.",
    )

    class Meta:
        model = BrokerAccount
        # credentials_encrypted is deliberately absent: it is written only by the services.
        fields = ("owner", "kind", "label", "environment", "position_mode", "base_currency", *_BROKER_FIELDS, "status", "trading_enabled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance.pk and "base_currency" in self.fields:
            # Blank: the kind's currency (KRW for KIS, INR for Kite...), chosen by the service.
            self.fields["base_currency"].required = False
            self.fields["base_currency"].help_text = "Leave blank for the kind's currency: " + ", ".join(
                f"{kind} {currency}" for kind, currency in DEFAULT_BASE_CURRENCY.items()
            )
            self.initial["base_currency"] = ""

    def entered_credentials(self) -> dict[str, str]:
        return {name: value for name in self.credential_names if (value := self.cleaned_data.get(_INPUT_PREFIX + name))}

    def clean_base_currency(self) -> str:
        return (self.cleaned_data.get("base_currency") or "").strip().upper()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = self.instance.kind if self.instance.pk else cleaned.get("kind")
        if kind not in CREDENTIAL_FIELDS:
            return cleaned  # the kind field carries its own error
        allowed = set(_credential_names(kind))
        for name in self.entered_credentials():
            if name not in allowed:
                self.add_error(_INPUT_PREFIX + name, f"Not used by {kind} accounts.")
        if "broker_options" in cleaned:
            problem = broker_options_problem(kind, cleaned["broker_options"] if cleaned["broker_options"] is not None else {})
            if problem:
                self.add_error("broker_options", problem)
        exchange_id = cleaned.get("exchange_id", self.instance.exchange_id)
        if kind == BrokerKind.CCXT and not exchange_id:
            self.add_error("exchange_id", "Required for a CCXT account.")
        merging = self.instance.pk and self.entered_credentials() and not cleaned.get("replace_credentials")
        if merging and self.instance.credentials_encrypted:
            try:
                broker_account_credential_names(account=self.instance)
            except CredentialError:
                self.add_error(
                    "replace_credentials",
                    "The stored credentials cannot be decrypted with the configured keys, so they cannot be merged: "
                    "tick this to replace them.",
                )
        return cleaned


def _form_for(kind: str | None) -> type[BrokerAccountForm]:
    attrs: dict[str, Any] = {"credential_names": _credential_names(kind)}
    for name in attrs["credential_names"]:
        attrs[_INPUT_PREFIX + name] = forms.CharField(
            label=name,
            required=False,
            help_text=_credential_help(name),
            # render_value=False: a submitted secret is not echoed back on a form error;
            # new-password keeps the browser from autofilling the staff user's own password.
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        )
    return type("BrokerAccountForm", (BrokerAccountForm,), attrs)


def _login_fields(obj: BrokerAccount) -> tuple[str, ...]:
    return ("kite_login",) if obj.kind == BrokerKind.KITE else ()


@admin.register(BrokerAccount)
class BrokerAccountAdmin(admin.ModelAdmin):
    list_display = ("id", "label", "owner", "kind", "environment", "status", "trading_enabled", "last_synced_at")
    list_display_links = ("id", "label")
    list_filter = ("kind", "environment", "status", "trading_enabled", "position_mode")
    search_fields = ("label", "owner__email", "broker_account_number", "broker_user_id", "exchange_id")
    list_select_related = ("owner",)
    autocomplete_fields = ("owner",)
    actions = ("disable_trading", "enable_trading", "sync_now", "refresh_tokens_now")

    def get_form(self, request: HttpRequest, obj: BrokerAccount | None = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["form"] = _form_for(obj.kind if obj else None)
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: BrokerAccount | None = None) -> Any:
        inputs = tuple(_INPUT_PREFIX + name for name in _credential_names(obj.kind if obj else None))
        broker = ("environment", "position_mode", "base_currency", *_BROKER_FIELDS)
        if obj is None:
            return (
                (None, {"fields": ("owner", "kind", "label")}),
                ("Broker account", {"fields": broker}),
                ("Credentials (write-only)", {"fields": inputs, "description": "Fill in only the fields of the chosen kind."}),
            )
        return (
            (None, {"fields": ("owner", "kind", "label", "status", "trading_enabled")}),
            ("Broker account", {"fields": broker}),
            ("Credentials (write-only)", {"fields": ("credentials", *inputs, "replace_credentials")}),
            ("Connection health", {"fields": (*_login_fields(obj), "connection_tokens", "connection_feed", "connection_sync")}),
            ("Sync", {"fields": ("last_synced_at", "last_error", "last_error_at", "created_at", "updated_at")}),
        )

    def get_readonly_fields(self, request: HttpRequest, obj: BrokerAccount | None = None) -> Any:
        if obj is None:
            return ()
        return (
            "owner",
            "kind",
            "credentials",
            "kite_login",
            "connection_tokens",
            "connection_feed",
            "connection_sync",
            "last_synced_at",
            "last_error",
            "last_error_at",
            "created_at",
            "updated_at",
        )

    @admin.display(description="Kite login")
    def kite_login(self, obj: BrokerAccount) -> str:
        """The account's login state and its "log in to Kite" link (the owner's to follow)."""
        status = broker_account_status(obj)
        return format_html(
            '{} — <a href="{}">log in to Kite</a>',
            "login required: orders are refused until the owner logs in" if status == LOGIN_REQUIRED else status,
            reverse("kite_login", kwargs={"pk": obj.pk}),
        )

    @admin.display(description="broker tokens")
    def connection_tokens(self, obj: BrokerAccount) -> str:
        states = broker_account_token_states(account=obj)
        if not states:
            return "none (this broker has no tokens, or its adapter is not loaded)"
        return format_html_join(
            mark_safe("<br>"),  # noqa: S308 - a constant
            "{}: {}, expires {}, last attempt {}{}",
            (
                (
                    t["name"],
                    "valid" if t["valid"] else ("expired" if t["present"] else "missing"),
                    _when(t["expires_at"]),
                    _when(t["last_attempt_at"]),
                    f" — {t['last_error']}" if t["last_error"] else "",
                )
                for t in states
            ),
        )

    @admin.display(description="live feed")
    def connection_feed(self, obj: BrokerAccount) -> str:
        feed = broker_account_feed_state(account=obj)
        if feed is None:
            return "not running"
        return format_html(
            "{}, last message {}, {} subscription(s){}{}",
            "connected" if feed["connected"] else "disconnected",
            _when(feed["last_message_at"]),
            len(feed["subscriptions"]),
            f", fills by {feed['notices']}" if feed["notices"] else "",
            f" — {feed['error']}" if feed["error"] else "",
        )

    @admin.display(description="last sync")
    def connection_sync(self, obj: BrokerAccount) -> str:
        duration = "" if obj.last_sync_duration is None else f" in {obj.last_sync_duration:.2f} s"
        first = "first sync done" if obj.initial_synced_at else "first sync not done (holdings not booked yet)"
        notes = broker_account_sync_notes(account=obj)
        return format_html(
            "{}{}; {}{}{}",
            _when(obj.last_synced_at),
            duration,
            first,
            f"; failed: {obj.last_sync_error}" if obj.last_sync_error else "",
            f"; {' '.join(notes)}" if notes else "",
        )

    @admin.display(description="stored credentials")
    def credentials(self, obj: BrokerAccount) -> str:
        if not obj.credentials_encrypted:
            return "none"
        try:
            names = broker_account_credential_names(account=obj)
        except CredentialError:
            return "stored, but no configured key decrypts them"
        return ", ".join(f"{name}=***" for name in names) or "none"

    @method_decorator(sensitive_post_parameters())
    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: BrokerAccount, form: BrokerAccountForm, change: bool) -> None:
        data = form.cleaned_data
        credentials = form.entered_credentials()
        if not change:
            account = broker_account_create(
                owner=data["owner"],
                kind=data["kind"],
                label=data["label"],
                environment=data["environment"],
                position_mode=data["position_mode"],
                base_currency=data["base_currency"] or None,
                credentials=credentials or None,
                **{name: data[name] for name in _BROKER_FIELDS if data.get(name)},
            )
            _adopt(obj, account)
            return
        # The admin runs this in one transaction: all of it applies or none.
        account = obj
        changes = {name: data[name] for name in form.changed_data if name in EDITABLE_FIELDS}
        if changes:
            account = broker_account_update(account=account, **changes)
        if credentials or data.get("replace_credentials"):
            account = broker_account_set_credentials(account=account, credentials=credentials, merge=not data.get("replace_credentials"))
        if "status" in form.changed_data:
            account = broker_account_set_status(account=account, status=data["status"])
        if "trading_enabled" in form.changed_data:
            account = broker_account_set_trading_enabled(account=account, enabled=data["trading_enabled"])
        account.refresh_from_db()
        _adopt(obj, account)

    def _set_trading(self, request: HttpRequest, queryset: QuerySet[BrokerAccount], enabled: bool) -> None:
        changed = 0
        for account in queryset.filter(trading_enabled=not enabled):
            broker_account_set_trading_enabled(account=account, enabled=enabled)
            changed += 1
        state = "enabled" if enabled else "disabled"
        self.message_user(request, f"Trading {state} on {changed} account(s).", messages.SUCCESS)

    @admin.action(description="Disable trading (kill switch)", permissions=["change"])
    def disable_trading(self, request: HttpRequest, queryset: QuerySet[BrokerAccount]) -> None:
        self._set_trading(request, queryset, enabled=False)

    @admin.action(description="Enable trading", permissions=["change"])
    def enable_trading(self, request: HttpRequest, queryset: QuerySet[BrokerAccount]) -> None:
        self._set_trading(request, queryset, enabled=True)

    @admin.action(description="Sync now", permissions=["change"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet[BrokerAccount]) -> None:
        for account in queryset.order_by("id")[:ADMIN_ACTION_MAX]:
            try:
                summary = sync_request(account.pk)
            except (BrokerError, DomainError) as exc:
                self.message_user(request, f"#{account.pk}: the sync was not started: {exc}", messages.ERROR)
                continue
            if summary is None:
                self.message_user(request, f"#{account.pk}: sync queued.", messages.SUCCESS)
            elif summary["outcome"] == "ok":
                booked = f", {len(summary['booked'])} external booking(s)" if summary["booked"] else ""
                drift = f", drift in {len(summary['drift'])} symbol(s)" if summary["drift"] else ""
                self.message_user(request, f"#{account.pk}: synced in {summary['duration']:.2f} s{booked}{drift}.", messages.SUCCESS)
            elif summary["outcome"] == "skipped":
                self.message_user(request, f"#{account.pk}: {summary['message']}", messages.WARNING)
            else:
                self.message_user(request, f"#{account.pk}: the sync failed: {summary['error']}", messages.ERROR)

    @admin.action(description="Refresh broker token now", permissions=["change"])
    def refresh_tokens_now(self, request: HttpRequest, queryset: QuerySet[BrokerAccount]) -> None:
        from brokers.errors import domain_error_for

        for account in queryset.order_by("id")[:ADMIN_ACTION_MAX]:
            try:
                names = broker_account_token_refresh(account=account, force=True)
            except DomainError as exc:
                self.message_user(request, f"#{account.pk}: {exc.message}", messages.WARNING)
            except BrokerError as exc:
                error = domain_error_for(exc)
                later = f" Retry in {error.retry_after} s." if error.retry_after else ""
                text = broker_account_mask(account=account, text=error.message)
                self.message_user(request, f"#{account.pk}: not refreshed ({error.code}): {text}{later}", messages.ERROR)
            else:
                self.message_user(request, f"#{account.pk}: refreshed {', '.join(names) or 'nothing'}.", messages.SUCCESS)
