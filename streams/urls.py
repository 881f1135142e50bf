from core.urls import route
from streams import views

urlpatterns = [
    *route("ws/asyncapi.json", views.AsyncApiView.as_view(), name="ws-asyncapi"),
    *route("ws/asyncapi", views.asyncapi_page, name="ws-asyncapi-page"),
]
