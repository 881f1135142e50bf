from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from core.exceptions import json_error_response
from core.views import PublicView
from streams.asyncapi import document, page_context


class AsyncApiView(PublicView):
    @extend_schema(responses=OpenApiTypes.OBJECT, operation_id="ws_asyncapi")
    def get(self, request: Request) -> Response:
        return Response(document())


@csrf_exempt  # it changes nothing; other methods get the API's 405, not a CSRF page
def asyncapi_page(request: HttpRequest) -> HttpResponse:
    """The AsyncAPI document as a page, rendered on the server (no scripts, no CDN)."""
    if request.method not in ("GET", "HEAD"):
        response = json_error_response(405, "method_not_allowed", f'Method "{request.method}" not allowed.')
        response["Allow"] = "GET, HEAD"
        return response
    return render(request, "streams/asyncapi.html", page_context())
