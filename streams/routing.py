from django.urls import re_path

from streams.consumer import GatewayConsumer

websocket_urlpatterns = [
    re_path(r"^api/v1/ws/?$", GatewayConsumer.as_asgi()),
]
