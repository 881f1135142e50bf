from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response


class CursorPagination(pagination.CursorPagination):
    """``{"results": [...], "next": "<cursor or null>"}``; pass ``?cursor=`` back."""

    ordering = "-id"
    page_size_query_param = "limit"
    max_page_size = 1000

    def decode_cursor(self, request: Any) -> Any:
        # DRF answers a malformed cursor 404; it is a bad query parameter (422).
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError({self.cursor_query_param: ["Invalid cursor: pass back a `next` value unchanged."]}) from None

    def get_next_link(self) -> str | None:
        link = super().get_next_link()
        if not link:
            return None
        return parse_qs(urlparse(link).query).get(self.cursor_query_param, [None])[0]

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"results": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {"type": "string", "nullable": True, "description": "Cursor of the next page, or null."},
            },
        }
