from drf_spectacular.views import SpectacularAPIView, SpectacularJSONAPIView, SpectacularRedocView, SpectacularSwaggerView

from core import views
from core.urls import route

urlpatterns = [
    *route("health", views.HealthView.as_view(), name="health"),
    *route("health/live", views.LiveView.as_view(), name="health-live"),
    *route("health/ready", views.ReadyView.as_view(), name="health-ready"),
    *route("healthz", views.HealthzView.as_view(), name="healthz"),
    *route("version", views.VersionView.as_view(), name="version"),
    *route("versions", views.VersionsView.as_view(), name="versions"),
    *route("schema", SpectacularAPIView.as_view(), name="schema"),
    *route("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi-json"),
    *route("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    *route("redoc", SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html"), name="redoc"),
]
