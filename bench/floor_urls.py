"""The project's URLs plus ``GET /bench/floor``: a plain Django view that
answers constant JSON, through the same middleware, on the same server as the
API. The request benchmark's floor; only ``bench.settings`` serves it."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from config.urls import handler404, handler500
from config.urls import urlpatterns as project_urlpatterns

FLOOR_BODY = b'{"status":"ok"}'


def floor(request: HttpRequest) -> HttpResponse:
    return HttpResponse(FLOOR_BODY, content_type="application/json")


urlpatterns = [path("bench/floor", floor), *project_urlpatterns]
__all__ = ["handler404", "handler500", "urlpatterns"]
