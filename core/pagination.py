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

    def get_page_size(self, request: Any) -> int | None:
        # DRF ignores a malformed limit (``1.5``, ``abc``, ``0``) and answers a
        # default page; it is a bad query parameter (422). Above the maximum counts as it.
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
            raise ValidationError({self.page_size_query_param: ["A whole number from 1 (larger than 1000 counts as 1000)."]})
        return min(int(raw), self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = "Rows per page, 1 to 1000 (larger counts as 1000)."
        return parameters

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
