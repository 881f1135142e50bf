from __future__ import annotations

from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from core.views import PublicView
from streams.asyncapi import document


class AsyncApiView(PublicView):
    @extend_schema(responses=OpenApiTypes.OBJECT, operation_id="ws_asyncapi")
    def get(self, request: Request) -> Response:
        return Response(document())
