from accounts.api import views
from core.urls import route

urlpatterns = [
    *route("me", views.MeView.as_view(), name="me"),
    *route("api-keys", views.ApiKeyListCreateView.as_view(), name="api-keys"),
    *route("api-keys/<id:pk>", views.ApiKeyDetailView.as_view(), name="api-key-detail"),
]
