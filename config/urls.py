from django.contrib import admin
from django.urls import include, path, re_path

from core import views as core_views
from core.urls import route
from marketdata import pages as marketdata_pages
from workspaces import pages
from workspaces import views as workspace_views

api_v1 = [
    path("", include("core.api_urls")),
    path("", include("accounts.api.urls")),
    path("", include("brokers.api.urls")),
    path("", include("streams.urls")),
    path("", include("marketdata.api.urls")),
    path("", include("oms.api.urls")),
    path("", include("workspaces.api.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    # Anything else under /api/ answers 404 in the error shape, never an HTML page.
    re_path(r"^api/", core_views.api_not_found),
    *route("metrics", core_views.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    *route("broker-accounts", pages.broker_accounts, name="broker_accounts"),
    *route("broker-accounts/<id:pk>/sync", pages.broker_account_sync, name="broker_account_sync"),
    *route("keys", pages.api_keys, name="api_keys"),
    *route("keys/<id:pk>/revoke", pages.api_key_revoke, name="api_key_revoke"),
    *route("settings/timezone", pages.timezone_set, name="timezone_set"),
    *route("fo/chain", marketdata_pages.option_chain, name="fo_chain"),
    *route("fo/futures", marketdata_pages.futures_view, name="fo_futures"),
    path("", workspace_views.home, name="home"),
]

handler404 = "core.handlers.page_not_found"
handler500 = "core.handlers.server_error"
