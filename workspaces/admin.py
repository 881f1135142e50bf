"""Staff view of workspaces and watchlists. Traders change these through the
API and pages (``workspaces.services``); here staff look, and delete through
the same services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from workspaces import services
from workspaces.models import UserSettings, Watchlist, WatchlistItem, Workspace
from workspaces.selectors import watchlist_symbols, with_symbols


class _LookOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Workspace)
class WorkspaceAdmin(_LookOnly):
    list_display = ["id", "name", "owner", "is_default", "updated_at"]
    list_filter = ["is_default"]
    search_fields = ["name", "owner__email"]
    list_select_related = ["owner"]
    readonly_fields = ["owner", "name", "is_default", "layout", "created_at", "updated_at"]

    def delete_model(self, request: HttpRequest, obj: Workspace) -> None:
        services.workspace_delete(workspace=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Workspace]) -> None:
        for workspace in queryset.select_related("owner"):
            services.workspace_delete(workspace=workspace)


class WatchlistItemInline(admin.TabularInline):
    model = WatchlistItem
    fields = ["position", "instrument"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["position", "id"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WatchlistItem]:
        return super().get_queryset(request).select_related("instrument")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Watchlist)
class WatchlistAdmin(_LookOnly):
    list_display = ["id", "name", "owner", "symbols", "updated_at"]
    search_fields = ["name", "owner__email"]
    list_select_related = ["owner"]
    readonly_fields = ["owner", "name", "columns", "created_at", "updated_at"]
    inlines = [WatchlistItemInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Watchlist]:
        return with_symbols(super().get_queryset(request))

    @admin.display(description="Symbols")
    def symbols(self, obj: Watchlist) -> str:
        shown = watchlist_symbols(obj)
        return ", ".join(shown[:10]) + (f" (+{len(shown) - 10})" if len(shown) > 10 else "")

    def delete_model(self, request: HttpRequest, obj: Watchlist) -> None:
        services.watchlist_delete(watchlist=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Watchlist]) -> None:
        for watchlist in queryset.select_related("owner"):
            services.watchlist_delete(watchlist=watchlist)


@admin.register(UserSettings)
class UserSettingsAdmin(_LookOnly):
    list_display = ["user", "timezone", "updated_at"]
    search_fields = ["user__email"]
    list_select_related = ["user"]
    readonly_fields = ["user", "timezone", "updated_at"]
