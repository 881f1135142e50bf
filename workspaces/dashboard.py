"""What the dashboard page needs from the server at first paint: the user's
accounts with what their brokers accept, and the page's settings. Everything
live (quotes, bars, orders, positions, funds) comes from the REST API and the
WebSocket once the page runs."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from accounts.models import User
from brokers.services import broker_account_status
from core.decimals import decimal_str
from marketdata.models import Instrument
from oms.specs.commands import broker_capabilities, default_time_in_force
from workspaces.api.serializers import WorkspaceSerializer
from workspaces.models import UserSettings
from workspaces.selectors import accounts_for_user, watchlist_symbols, watchlists_for_user
from workspaces.services import workspace_get_default

# The page's JavaScript modules, preloaded together instead of discovered import by import.
MODULES = [f"terminal/js/{name}.js" for name in ("api", "format", "ws", "layout", "watchlist", "chart", "ticket", "blotters", "dashboard")]
# The chart's resolution switcher (UDF resolutions the history endpoint serves).
RESOLUTIONS = [("1", "1m"), ("5", "5m"), ("15", "15m"), ("30", "30m"), ("60", "1h"), ("240", "4h"), ("1D", "1D"), ("1W", "1W")]


def dashboard_accounts(*, user: User) -> list[dict[str, Any]]:
    """The user's accounts (one query) with the order types and times in force
    their broker takes, so the ticket offers only those."""
    rows = []
    for account in accounts_for_user(user=user):
        capabilities = broker_capabilities(account)
        rows.append(
            {
                "id": account.pk,
                "label": account.label,
                "kind": account.kind,
                "environment": account.environment,
                "position_mode": account.position_mode,
                "base_currency": account.base_currency,
                "status": broker_account_status(account),
                "trading_enabled": account.trading_enabled,
                "order_types": sorted(capabilities.order_types) if capabilities else [],
                "times_in_force": sorted(capabilities.times_in_force) if capabilities else [],
                "default_time_in_force": default_time_in_force(capabilities),
                "supports_modify": bool(capabilities and capabilities.supports_modify),
            }
        )
    return rows


def dashboard_workspace(*, user: User) -> dict[str, Any]:
    """The default workspace (created when missing), its watchlist and the
    instruments it shows, as the API answers them: the page paints without
    waiting for three more round trips."""
    workspace = WorkspaceSerializer(workspace_get_default(user=user)).data
    watchlist_id = workspace["layout"].get("watchlist_id")
    found = watchlists_for_user(user=user).filter(pk=watchlist_id).first() if watchlist_id else None
    watchlist = None
    symbols: list[str] = []
    if found is not None:
        symbols = watchlist_symbols(found)
        watchlist = {"id": found.pk, "name": found.name, "symbols": symbols, "columns": list(found.columns or [])}
    selected = workspace["layout"].get("symbol")
    wanted = set(symbols) | ({selected} if isinstance(selected, str) else set())
    instruments = {
        i.symbol: {
            "symbol": i.symbol,
            "description": i.description,
            "exchange": i.exchange,
            "currency": i.currency,
            "tick_size": decimal_str(i.tick_size),
            "lot_size": decimal_str(i.lot_size),
            "multiplier": decimal_str(i.multiplier),
        }
        for i in Instrument.objects.filter(symbol__in=wanted).only(
            "symbol", "description", "exchange", "currency", "tick_size", "lot_size", "multiplier"
        )
    }
    return {"workspace": workspace, "watchlist": watchlist, "instruments": instruments}


def dashboard_config(*, user: User) -> dict[str, Any]:
    return {
        **dashboard_workspace(user=user),
        "accounts": dashboard_accounts(user=user),
        # The zone the user chose (PATCH /api/v1/me/settings); none chosen: the browser's.
        "user": {"email": user.email, "timezone": UserSettings.objects.filter(user=user).values_list("timezone", flat=True).first() or ""},
        # Orders whose estimated notional (in the account's base currency) passes this ask for a confirmation.
        "confirm_notional": str(settings.DASHBOARD_CONFIRM_NOTIONAL),
        "ws_path": "/api/v1/ws",
        "resolutions": [code for code, _label in RESOLUTIONS],
        "login_url": settings.LOGIN_URL,
    }
