from django.urls import path

from core.urls import route
from workspaces.api import views

urlpatterns = [
    *route("workspaces", views.WorkspaceListCreateView.as_view(), name="workspaces"),
    *route("workspaces/default", views.WorkspaceDefaultView.as_view(), name="workspace-default"),
    *route("workspaces/<id:pk>", views.WorkspaceDetailView.as_view(), name="workspace-detail"),
    *route("watchlists", views.WatchlistListCreateView.as_view(), name="watchlists"),
    *route("watchlists/<id:pk>", views.WatchlistDetailView.as_view(), name="watchlist-detail"),
    *route("watchlists/<id:pk>/items", views.WatchlistItemsView.as_view(), name="watchlist-items"),
    # Symbols hold "/" and ":" (BINANCE:BTC/USDT): the rest of the path is the symbol.
    path("watchlists/<id:pk>/items/<textpath:symbol>", views.WatchlistItemDetailView.as_view(), name="watchlist-item"),
    *route("me/settings", views.MeSettingsView.as_view(), name="me-settings"),
]
