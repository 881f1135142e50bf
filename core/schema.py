"""drf-spectacular hooks."""

from __future__ import annotations

from typing import Any


def drop_trailing_slash_variants(endpoints: list[tuple[str, str, str, Any]], **kwargs: Any) -> list[tuple[str, str, str, Any]]:
    """Every path is served with and without one trailing slash; document it once."""
    paths = {path for path, *_ in endpoints}
    return [e for e in endpoints if not (e[0].endswith("/") and e[0].rstrip("/") in paths)]


# The one error shape (core.exceptions.error_body), for answers no view documents itself.
ERROR_COMPONENTS: dict[str, Any] = {
    "ErrorDetail": {
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "fields": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
            "request_id": {"type": "string", "nullable": True},
        },
        "required": ["code", "message", "fields", "request_id"],
    },
    "Error": {"type": "object", "properties": {"error": {"$ref": "#/components/schemas/ErrorDetail"}}, "required": ["error"]},
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_STANDARD_ERRORS = {
    "400": "Malformed JSON, or JSON nested deeper than JSON_MAX_DEPTH (parse_error).",
    "401": "Missing, invalid, revoked or expired credentials.",
    "403": "The key's scope, the kill switch, or a missing CSRF token refuses it.",
    "404": "No such object (another user's objects answer this too).",
    "413": "The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE (request_too_large).",
    "422": "Invalid or unknown fields or query parameters (validation_error).",
    "429": "Throttled; Retry-After says when to try again.",
}


def document_error_responses(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: every operation documents the error answers the
    project's conventions give it, in the one error shape (operations that
    document another error shape, the UDF datafeed's, are left as they are)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in ERROR_COMPONENTS.items():
        schemas.setdefault(name, schema)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            if _documents_another_error_shape(responses):
                continue
            public = {} in (operation.get("security") or [{}])
            has_body = "requestBody" in operation
            has_query = any(p.get("in") == "query" for p in operation.get("parameters", []))
            wanted = set()
            if not public:
                wanted |= {"401", "403", "429"}
            if "{" in path:
                wanted.add("404")
            if has_body:
                wanted |= {"400", "413", "422"}
            if has_query:
                wanted.add("422")
            for status in sorted(wanted - set(responses)):
                responses[status] = {"description": _STANDARD_ERRORS[status], "content": {"application/json": {"schema": _ERROR_REF}}}
    return result


def _documents_another_error_shape(responses: dict[str, Any]) -> bool:
    for status, response in responses.items():
        if status.startswith("4"):
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            if schema and schema != _ERROR_REF:
                return True
    return False


def add_links(result: dict[str, Any], operation_id: str, status: str, links: dict[str, dict[str, Any]]) -> None:
    """OpenAPI links on one answer of ``operation_id`` (what a client, or a
    stateful fuzzer, may call next with a value of that answer)."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                operation["responses"][status].setdefault("links", {}).update(links)
                return
    raise LookupError(f"no operation {operation_id} in the OpenAPI document")
