"""Workspaces (a trader's dashboard layout), watchlists and the user's display
settings. The layout's shape is checked by ``workspaces.layout``; every write
goes through ``workspaces.services``."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Workspace(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="workspaces")
    name = models.CharField(max_length=100)
    # {"panels": [{"id", "kind", "size"}], "account_id", "symbol", "resolution", "watchlist_id"}
    layout = models.JSONField(default=dict, blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # One default per user, whatever two requests do at once.
            models.UniqueConstraint(fields=["owner"], condition=Q(is_default=True), name="workspace_one_default_per_owner"),
        ]
        indexes = [models.Index(fields=["owner", "id"])]

    def __str__(self) -> str:
        return self.name


class Watchlist(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="watchlists")
    name = models.CharField(max_length=100)
    columns = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["owner", "id"])]

    def __str__(self) -> str:
        return self.name


class WatchlistItem(models.Model):
    watchlist = models.ForeignKey(Watchlist, on_delete=models.CASCADE, related_name="items")
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["watchlist", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["watchlist", "instrument"], name="watchlist_item_unique_instrument"),
        ]

    def __str__(self) -> str:
        return f"{self.watchlist_id}#{self.position}"


class UserSettings(models.Model):
    """Display preferences of one user (created on first change)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="terminal_settings")
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone the pages show times in.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "user settings"

    def __str__(self) -> str:
        return f"settings of {self.user_id}"
