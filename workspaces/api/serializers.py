from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import StrictSerializer
from workspaces.layout import ColumnsField, LayoutSerializer, PanelSerializer, layout_full
from workspaces.models import UserSettings, Watchlist, Workspace
from workspaces.selectors import watchlist_symbols


def _symbol() -> serializers.CharField:
    return serializers.CharField(max_length=64)


class LayoutOutSerializer(serializers.Serializer):
    panels = PanelSerializer(many=True)
    account_id = serializers.IntegerField(allow_null=True)
    symbol = serializers.CharField(allow_null=True)
    resolution = serializers.CharField(allow_null=True)
    watchlist_id = serializers.IntegerField(allow_null=True)


class WorkspaceSerializer(serializers.ModelSerializer):
    layout = serializers.SerializerMethodField()

    class Meta:
        model = Workspace
        fields = ["id", "name", "is_default", "layout", "created_at", "updated_at"]
        read_only_fields = fields

    @extend_schema_field(LayoutOutSerializer)
    def get_layout(self, obj: Workspace) -> dict[str, Any]:
        return layout_full(obj.layout)


class WorkspaceCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    layout = LayoutSerializer(required=False)
    is_default = serializers.BooleanField(required=False, default=False)


class WorkspacePatchSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False)
    layout = LayoutSerializer(required=False, help_text="The keys given replace the stored ones; the others stay.")
    is_default = serializers.BooleanField(required=False, help_text="true moves the default here; false is refused.")


class WorkspacePutSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    layout = LayoutSerializer(help_text="The whole layout: keys left out become null (panels: empty).")
    is_default = serializers.BooleanField(required=False)


class WatchlistSerializer(serializers.ModelSerializer):
    symbols = serializers.SerializerMethodField()
    columns = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = Watchlist
        fields = ["id", "name", "symbols", "columns", "created_at", "updated_at"]
        read_only_fields = fields

    def get_symbols(self, obj: Watchlist) -> list[str]:
        return watchlist_symbols(obj)


class WatchlistCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    columns = ColumnsField(required=False)
    symbols = serializers.ListField(child=_symbol(), required=False, help_text="Active instruments' symbols, in order.")


class WatchlistPatchSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False)
    columns = ColumnsField(required=False)
    symbols = serializers.ListField(child=_symbol(), required=False, help_text="Replaces the symbols (any set), in this order.")


class WatchlistItemSerializer(StrictSerializer):
    symbol = _symbol()


class WatchlistReorderSerializer(StrictSerializer):
    symbols = serializers.ListField(child=_symbol(), help_text="Exactly the watchlist's symbols, in the new order.")


class UserSettingsSerializer(serializers.ModelSerializer):
    class Meta:
        model = UserSettings
        fields = ["timezone"]
        read_only_fields = fields


class UserSettingsPatchSerializer(StrictSerializer):
    timezone = serializers.CharField(max_length=64, required=False, help_text="An IANA time zone, e.g. Europe/London.")
