"""Workspace, watchlist and user-settings services: every write and every rule.

Writes of one user's workspaces and watchlists take that user's row lock
first, so the per-user limits and the one-default rule hold when two requests
(two browser tabs) arrive at once."""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from accounts.models import User
from brokers.models import BrokerAccount, BrokerKind
from core.exceptions import InvalidInput, NotFound, flatten_fields
from core.urls import has_unencodable_text
from marketdata.models import Instrument
from workspaces.layout import DEFAULT_COLUMNS, DEFAULT_PANELS, DEFAULT_RESOLUTION, ColumnsField, LayoutSerializer, layout_full
from workspaces.models import UserSettings, Watchlist, WatchlistItem, Workspace

DEFAULT_WORKSPACE_NAME = "Main"
DEFAULT_WATCHLIST_NAME = "Watchlist"
DEFAULT_WATCHLIST_SIZE = 8
MAX_NAME = 100


def _lock_user(user: User) -> None:
    # The per-user serialization point (see the module docstring).
    User.objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()


def _clean_name(name: Any, *, field: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(fields={field: ["A name is required."]})
    name = name.strip()
    if len(name) > MAX_NAME:
        raise InvalidInput(fields={field: [f"At most {MAX_NAME} characters."]})
    return name


# --- workspaces -------------------------------------------------------------------------------------


def _clean_layout(*, owner: User, layout: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The layout to store: ``layout`` checked (shape, then that what it names
    exists and is the owner's), over ``base`` when patching."""
    checked = LayoutSerializer(data=layout)
    if not checked.is_valid():
        raise InvalidInput(fields=flatten_fields(checked.errors, "layout"))
    data = dict(checked.validated_data)
    if "panels" in data:
        data["panels"] = [dict(panel) for panel in data["panels"]]
    merged = layout_full(base) | data
    errors: dict[str, list[str]] = {}
    if merged["account_id"] is not None and not BrokerAccount.objects.filter(pk=merged["account_id"], owner=owner).exists():
        errors["layout.account_id"] = ["No such account."]
    if merged["watchlist_id"] is not None and not Watchlist.objects.filter(pk=merged["watchlist_id"], owner=owner).exists():
        errors["layout.watchlist_id"] = ["No such watchlist."]
    symbol = merged["symbol"]
    if symbol is not None and (has_unencodable_text(symbol) or not Instrument.objects.filter(symbol=symbol).exists()):
        errors["layout.symbol"] = ["Unknown symbol."]
    if errors:
        raise InvalidInput(fields=errors)
    return merged


def workspace_get_for_user(*, user: User, workspace_id: int) -> Workspace:
    workspace = Workspace.objects.filter(pk=workspace_id, owner=user).first()
    if workspace is None:
        raise NotFound("No such workspace.")
    return workspace


def workspace_create(*, owner: User, name: str, layout: Any = None, is_default: bool = False) -> Workspace:
    """A new workspace; made the default (and the previous one not) when asked."""
    name = _clean_name(name)
    with transaction.atomic():
        _lock_user(owner)
        if Workspace.objects.filter(owner=owner).count() >= settings.WORKSPACES_MAX_PER_USER:
            raise InvalidInput(f"At most {settings.WORKSPACES_MAX_PER_USER} workspaces per user; delete one first.", code="limit_reached")
        clean = _clean_layout(owner=owner, layout=layout if layout is not None else {})
        if is_default:
            Workspace.objects.filter(owner=owner, is_default=True).update(is_default=False)
        return Workspace.objects.create(owner=owner, name=name, layout=clean, is_default=is_default)


def workspace_update(
    *, workspace: Workspace, name: str | None = None, layout: Any = None, is_default: bool | None = None, replace: bool = False
) -> Workspace:
    """Change a workspace. ``layout`` keys given replace the stored ones
    (``replace``: the whole layout is the one given, missing keys null).
    ``is_default=True`` moves the default here; a default is never unset
    directly, only by choosing another."""
    with transaction.atomic():
        _lock_user(workspace.owner)
        workspace = Workspace.objects.get(pk=workspace.pk)
        fields = ["updated_at"]
        if name is not None:
            workspace.name = _clean_name(name)
            fields.append("name")
        if layout is not None:
            workspace.layout = _clean_layout(owner=workspace.owner, layout=layout, base=None if replace else workspace.layout)
            fields.append("layout")
        if is_default is False and workspace.is_default:
            raise InvalidInput(fields={"is_default": ["Make another workspace the default instead."]})
        if is_default and not workspace.is_default:
            Workspace.objects.filter(owner=workspace.owner, is_default=True).update(is_default=False)
            workspace.is_default = True
            fields.append("is_default")
        workspace.save(update_fields=fields)
        return workspace


def workspace_delete(*, workspace: Workspace) -> None:
    """Delete a workspace; deleting the default makes the oldest other one the default."""
    with transaction.atomic():
        _lock_user(workspace.owner)
        was_default = Workspace.objects.filter(pk=workspace.pk, is_default=True).exists()
        Workspace.objects.filter(pk=workspace.pk).delete()
        if was_default:
            heir = Workspace.objects.filter(owner=workspace.owner).order_by("id").first()
            if heir is not None:
                Workspace.objects.filter(pk=heir.pk).update(is_default=True)


def workspace_get_default(*, user: User) -> Workspace:
    """The user's default workspace, created when missing (with a default
    watchlist when the user has none); an existing workspace is promoted
    rather than a new one created."""
    found = Workspace.objects.filter(owner=user, is_default=True).first()
    if found is not None:
        return found
    with transaction.atomic():
        _lock_user(user)
        found = Workspace.objects.filter(owner=user, is_default=True).first()  # another request made it meanwhile
        if found is not None:
            return found
        oldest = Workspace.objects.filter(owner=user).order_by("id").first()
        if oldest is not None:
            Workspace.objects.filter(pk=oldest.pk).update(is_default=True)
            oldest.is_default = True
            return oldest
        watchlist = Watchlist.objects.filter(owner=user).order_by("id").first() or _default_watchlist_create(owner=user)
        first_item = watchlist.items.select_related("instrument").order_by("position", "id").first()
        account = (
            BrokerAccount.objects.filter(owner=user).order_by("id").filter(kind=BrokerKind.PAPER).first()
            or BrokerAccount.objects.filter(owner=user).order_by("id").first()
        )
        layout = {
            "panels": [dict(panel) for panel in DEFAULT_PANELS],
            "account_id": account.pk if account else None,
            "symbol": first_item.instrument.symbol if first_item else None,
            "resolution": DEFAULT_RESOLUTION,
            "watchlist_id": watchlist.pk,
        }
        return Workspace.objects.create(owner=user, name=DEFAULT_WORKSPACE_NAME, layout=layout, is_default=True)


# --- watchlists -------------------------------------------------------------------------------------


def _clean_columns(columns: Any) -> list[str]:
    field = ColumnsField()
    try:
        return list(field.run_validation(columns))
    except Exception as exc:  # DRF's ValidationError: its detail names the problem
        detail = getattr(exc, "detail", None)
        if detail is None:
            raise
        raise InvalidInput(fields=flatten_fields(detail, "columns")) from None


def _instruments_for(symbols: Any, *, field: str = "symbols") -> list[Instrument]:
    """The active instruments named, in order; every problem reported at once."""
    if not isinstance(symbols, list | tuple) or not all(isinstance(s, str) for s in symbols):
        raise InvalidInput(fields={field: ["A list of symbols is required."]})
    if len(symbols) > settings.WATCHLIST_MAX_ITEMS:
        raise InvalidInput(fields={field: [f"At most {settings.WATCHLIST_MAX_ITEMS} symbols per watchlist."]}, code="limit_reached")
    if len(set(symbols)) != len(symbols):
        raise InvalidInput(fields={field: ["Symbols must be unique."]})
    storable = [s for s in symbols if len(s) <= 64 and not has_unencodable_text(s)]
    found = {i.symbol: i for i in Instrument.objects.filter(symbol__in=storable, active=True)}
    unknown = [s for s in symbols if s not in found]
    if unknown:
        shown = ", ".join(s[:64] for s in unknown[:10])
        raise InvalidInput(fields={field: [f"Unknown or inactive symbols: {shown}."]}, code="unknown_symbol")
    return [found[s] for s in symbols]


def _items_replace(watchlist: Watchlist, instruments: Sequence[Instrument]) -> None:
    WatchlistItem.objects.filter(watchlist=watchlist).delete()
    WatchlistItem.objects.bulk_create(
        [WatchlistItem(watchlist=watchlist, instrument=instrument, position=n) for n, instrument in enumerate(instruments)]
    )


def _touch(watchlist: Watchlist) -> None:
    watchlist.save(update_fields=["updated_at"])


def watchlist_get_for_user(*, user: User, watchlist_id: int) -> Watchlist:
    watchlist = Watchlist.objects.filter(pk=watchlist_id, owner=user).first()
    if watchlist is None:
        raise NotFound("No such watchlist.")
    return watchlist


def watchlist_create(*, owner: User, name: str, columns: Any = None, symbols: Any = None) -> Watchlist:
    name = _clean_name(name)
    clean_columns = list(DEFAULT_COLUMNS) if columns is None else _clean_columns(columns)
    instruments = _instruments_for(symbols) if symbols is not None else []
    with transaction.atomic():
        _lock_user(owner)
        if Watchlist.objects.filter(owner=owner).count() >= settings.WATCHLISTS_MAX_PER_USER:
            raise InvalidInput(f"At most {settings.WATCHLISTS_MAX_PER_USER} watchlists per user; delete one first.", code="limit_reached")
        watchlist = Watchlist.objects.create(owner=owner, name=name, columns=clean_columns)
        _items_replace(watchlist, instruments)
    return watchlist


def _default_watchlist_create(*, owner: User) -> Watchlist:
    # Quoted: the simulator moves those with simulator parameters; other
    # active instruments fill the list when there are fewer.
    simulated = list(Instrument.objects.filter(active=True).exclude(sim_params={}).order_by("symbol")[:DEFAULT_WATCHLIST_SIZE])
    if len(simulated) < DEFAULT_WATCHLIST_SIZE:
        others = Instrument.objects.filter(active=True).exclude(pk__in=[i.pk for i in simulated]).order_by("symbol")
        simulated += list(others[: DEFAULT_WATCHLIST_SIZE - len(simulated)])
    watchlist = Watchlist.objects.create(owner=owner, name=DEFAULT_WATCHLIST_NAME, columns=list(DEFAULT_COLUMNS))
    _items_replace(watchlist, simulated)
    return watchlist


def watchlist_update(*, watchlist: Watchlist, name: str | None = None, columns: Any = None, symbols: Any = None) -> Watchlist:
    """Rename, choose columns, or replace the symbols (in the order given)."""
    clean_name = _clean_name(name) if name is not None else None
    clean_columns = _clean_columns(columns) if columns is not None else None
    instruments = _instruments_for(symbols) if symbols is not None else None
    with transaction.atomic():
        watchlist = Watchlist.objects.select_for_update().get(pk=watchlist.pk)
        if clean_name is not None:
            watchlist.name = clean_name
        if clean_columns is not None:
            watchlist.columns = clean_columns
        if instruments is not None:
            _items_replace(watchlist, instruments)
        watchlist.save(update_fields=["name", "columns", "updated_at"])
    return watchlist


def watchlist_delete(*, watchlist: Watchlist) -> None:
    """Delete a watchlist; the owner's workspaces showing it show none."""
    with transaction.atomic():
        _lock_user(watchlist.owner)
        for workspace in Workspace.objects.filter(owner=watchlist.owner).only("id", "layout"):
            layout = layout_full(workspace.layout)
            if layout["watchlist_id"] == watchlist.pk:
                workspace.layout = layout | {"watchlist_id": None}
                workspace.save(update_fields=["layout", "updated_at"])
        Watchlist.objects.filter(pk=watchlist.pk).delete()


def watchlist_item_add(*, watchlist: Watchlist, symbol: Any) -> bool:
    """Append ``symbol``; False (nothing changed) when it is already there."""
    if not isinstance(symbol, str) or not symbol:
        raise InvalidInput(fields={"symbol": ["A symbol is required."]})
    (instrument,) = _instruments_for([symbol], field="symbol")
    with transaction.atomic():
        watchlist = Watchlist.objects.select_for_update().get(pk=watchlist.pk)
        items = WatchlistItem.objects.filter(watchlist=watchlist)
        if items.filter(instrument=instrument).exists():
            return False
        if items.count() >= settings.WATCHLIST_MAX_ITEMS:
            raise InvalidInput(f"At most {settings.WATCHLIST_MAX_ITEMS} symbols per watchlist.", code="limit_reached")
        last = items.aggregate(last=Max("position"))["last"]
        WatchlistItem.objects.create(watchlist=watchlist, instrument=instrument, position=0 if last is None else last + 1)
        _touch(watchlist)
    return True


def watchlist_item_remove(*, watchlist: Watchlist, symbol: str) -> None:
    with transaction.atomic():
        watchlist = Watchlist.objects.select_for_update().get(pk=watchlist.pk)
        deleted, _ = WatchlistItem.objects.filter(watchlist=watchlist, instrument__symbol=symbol).delete()
        if not deleted:
            raise NotFound(f"'{symbol[:64]}' is not in this watchlist.", code="not_in_watchlist")
        _touch(watchlist)


def watchlist_items_reorder(*, watchlist: Watchlist, symbols: Any) -> None:
    """Put the watchlist's symbols in the order given: exactly the same set."""
    if not isinstance(symbols, list | tuple) or not all(isinstance(s, str) for s in symbols):
        raise InvalidInput(fields={"symbols": ["A list of symbols is required."]})
    with transaction.atomic():
        watchlist = Watchlist.objects.select_for_update().get(pk=watchlist.pk)
        items = {item.instrument.symbol: item for item in WatchlistItem.objects.filter(watchlist=watchlist).select_related("instrument")}
        if len(symbols) != len(set(symbols)) or set(symbols) != set(items):
            raise InvalidInput(fields={"symbols": ["Give exactly the watchlist's symbols, each once, in the new order."]})
        if not items:
            return
        for n, symbol in enumerate(symbols):
            items[symbol].position = n
        WatchlistItem.objects.bulk_update(list(items.values()), ["position"])
        _touch(watchlist)


# --- user settings ----------------------------------------------------------------------------------


@functools.cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def user_settings_get(*, user: User) -> UserSettings:
    """The user's settings (defaults, unsaved, when never changed)."""
    found = UserSettings.objects.filter(user=user).first()
    return found if found is not None else UserSettings(user=user)


def user_settings_update(*, user: User, timezone: str | None = None) -> UserSettings:
    if timezone is not None and (not isinstance(timezone, str) or timezone not in _timezones()):
        raise InvalidInput(fields={"timezone": ["Not a known IANA time zone (for example Europe/London, Asia/Seoul, UTC)."]})
    with transaction.atomic():
        row, _ = UserSettings.objects.select_for_update().get_or_create(user=user)
        if timezone is not None:
            row.timezone = timezone
        row.save()
    return row


def user_timezone(*, user: User) -> zoneinfo.ZoneInfo:
    """The zone the user's pages show times in (UTC unless chosen)."""
    name = UserSettings.objects.filter(user=user).values_list("timezone", flat=True).first() or "UTC"
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")
