"""The trader's account and key pages (server-rendered, htmx for the parts
that change). Thin: forms check the shape, services decide, selectors read."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.services import api_key_create, api_key_revoke_for_user
from brokers.base import BrokerError
from brokers.models import BrokerKind, Environment
from brokers.services import broker_account_create, broker_account_get_for_user
from core.exceptions import DomainError, NotFound
from oms.services.send import account_check_configured
from oms.services.sync import account_sync_request
from workspaces.forms import ApiKeyForm, PaperAccountForm, TimezoneForm, add_service_errors
from workspaces.selectors import account_page_row, account_page_rows, api_keys_for_user
from workspaces.services import user_settings_update, user_timezone

View = Callable[..., HttpResponse]


def page_login_required(view: View) -> View:
    """Login first, then back (``next``). An htmx request whose session has
    expired gets a client-side redirect of the whole page, never the login
    page swapped into a table row."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated:
            zone = user_timezone(user=request.user)  # type: ignore[arg-type]
            with timezone.override(zone):
                request.user_timezone = zone  # type: ignore[attr-defined]
                return view(request, *args, **kwargs)
        htmx = getattr(request, "htmx", None)
        back = (htmx.current_url_abs_path if htmx else None) or request.get_full_path()
        login = f"{settings.LOGIN_URL}?{urlencode({'next': back})}"
        return HttpResponseClientRedirect(login) if htmx else HttpResponseRedirect(login)

    return wrapped


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


# --- /broker-accounts --------------------------------------------------------------------------------


def _accounts_page(
    request: HttpRequest, form: PaperAccountForm, *, notice: str = "", timezone_form: TimezoneForm | None = None
) -> HttpResponse:
    zone = str(request.user_timezone)  # type: ignore[attr-defined]
    context = {
        "rows": account_page_rows(user=request.user),  # type: ignore[arg-type]
        "form": form,
        "notice": notice,
        "timezone_name": zone,
        "timezone_form": timezone_form or TimezoneForm(initial={"timezone": zone}),
    }
    # Form errors answer 200 as well: htmx swaps only successful answers.
    return render(request, "workspaces/broker_accounts.html", context)


@page_login_required
@require_http_methods(["GET", "POST"])
def broker_accounts(request: HttpRequest) -> HttpResponse:
    """The user's accounts with their connection health; POST adds a paper account."""
    if request.method != "POST":
        return _accounts_page(request, PaperAccountForm())
    form = PaperAccountForm(request.POST)
    if form.is_valid():
        try:
            account = broker_account_create(
                owner=request.user,  # type: ignore[arg-type]
                kind=BrokerKind.PAPER,
                environment=Environment.PAPER,
                label=form.cleaned_data["label"],
                base_currency=form.cleaned_data["base_currency"].strip().upper(),
                position_mode=form.cleaned_data["position_mode"],
            )
        except DomainError as exc:
            add_service_errors(form, exc)
        else:
            if _is_htmx(request):
                return _accounts_page(request, PaperAccountForm(), notice=f"Paper account #{account.pk} added.")
            return redirect("broker_accounts")
    return _accounts_page(request, form)


@page_login_required
@require_POST
def broker_account_sync(request: HttpRequest, pk: int) -> HttpResponse:
    """Sync one account now (the OMS's sync service); answers its row."""
    try:
        account = broker_account_get_for_user(user=request.user, account_id=pk)  # type: ignore[arg-type]
    except NotFound:
        raise Http404 from None
    try:
        account_check_configured(account, doing="it was not synced")
        summary = account_sync_request(account.pk)
    except (DomainError, BrokerError) as exc:
        message, ok = str(getattr(exc, "message", "") or exc), False
    else:
        if summary is None:
            message, ok = "Sync queued.", True
        else:
            ok = summary.get("outcome") == "ok"
            message = "Synced." if ok else str(summary.get("message") or summary.get("outcome") or "Not synced.")
    if not _is_htmx(request):
        return redirect("broker_accounts")
    account.refresh_from_db()
    return render(request, "workspaces/_account_row.html", {"row": account_page_row(account), "row_message": message, "row_ok": ok})


@page_login_required
@require_POST
def timezone_set(request: HttpRequest) -> HttpResponse:
    """The user's time zone (the pages show times in it)."""
    form = TimezoneForm(request.POST)
    if form.is_valid():
        try:
            user_settings_update(user=request.user, timezone=form.cleaned_data["timezone"].strip())  # type: ignore[arg-type]
        except DomainError as exc:
            add_service_errors(form, exc)
        else:
            target = reverse("broker_accounts")
            return HttpResponseClientRedirect(target) if _is_htmx(request) else HttpResponseRedirect(target)
    return _accounts_page(request, PaperAccountForm(), timezone_form=form)


# --- /keys -------------------------------------------------------------------------------------------


def _keys_page(request: HttpRequest, form: ApiKeyForm, *, issued: Any = None) -> HttpResponse:
    context = {
        "keys": api_keys_for_user(user=request.user),  # type: ignore[arg-type]
        "form": form,
        "issued": issued,
        "now": timezone.now(),
        "timezone_name": str(request.user_timezone),  # type: ignore[attr-defined]
    }
    return render(request, "workspaces/api_keys.html", context)


@page_login_required
@require_http_methods(["GET", "POST"])
def api_keys(request: HttpRequest) -> HttpResponse:
    """The user's API keys; POST creates one and shows its secret once."""
    if request.method != "POST":
        return _keys_page(request, ApiKeyForm())
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            issued = api_key_create(user=request.user, **form.cleaned_data)  # type: ignore[arg-type]
        except DomainError as exc:
            add_service_errors(form, exc)
        else:
            # Rendered, not redirected: the secret exists only in this answer.
            return _keys_page(request, ApiKeyForm(), issued=issued)
    return _keys_page(request, form)


@page_login_required
@require_POST
def api_key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke one of the user's keys (another user's id: 404); answers its row."""
    try:
        api_key = api_key_revoke_for_user(user=request.user, api_key_id=pk)  # type: ignore[arg-type]
    except NotFound:
        raise Http404 from None
    if not _is_htmx(request):
        return redirect("api_keys")
    return render(request, "workspaces/_api_key_row.html", {"key": api_key, "now": timezone.now()})
