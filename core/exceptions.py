"""The one error shape of the project, produced for every 4xx/5xx outside UDF:

    {"error": {"code": "...", "message": "...", "fields": {...}, "request_id": "..."}}

Services raise ``DomainError`` subclasses; DRF and Django exceptions are mapped
here once, so views never build error bodies themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from core.context import current_request_id

logger = logging.getLogger(__name__)


class DomainError(Exception):
    """Base class of every business-rule failure. ``permanent`` tells callers
    (tasks, reconciliation) whether retrying the same thing can ever succeed."""

    status_code = 400
    code = "bad_request"
    default_message = "The request was refused."
    permanent = True

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        fields: Mapping[str, Any] | None = None,
        status_code: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.retry_after = retry_after  # seconds, sent as Retry-After (429, 503)
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code
        self.fields = dict(fields or {})
        super().__init__(self.message)


class InvalidInput(DomainError):
    status_code = 422
    code = "validation_error"
    default_message = "The request is not valid."


class NotFound(DomainError):
    status_code = 404
    code = "not_found"
    default_message = "Not found."


class Forbidden(DomainError):
    status_code = 403
    code = "permission_denied"
    default_message = "You may not do this."


class Throttled(DomainError):
    status_code = 429
    code = "throttled"
    default_message = "Too many requests; retry after the time in Retry-After."
    permanent = False


class Conflict(DomainError):
    status_code = 409
    code = "conflict"
    default_message = "The request conflicts with the current state."


class DatabaseBusy(DomainError):
    """Every pooled database connection stayed taken for ``DB_POOL_TIMEOUT``
    seconds: the server is saturated, not broken, so the client may retry."""

    status_code = 503
    code = "service_unavailable"
    default_message = "The server is busy; retry after the time in Retry-After."
    permanent = False


DATABASE_BUSY_RETRY_AFTER = 1  # seconds


class ServerBusy(DomainError):
    """This process already serves ``WEB_LIMIT_CONCURRENCY`` requests and no
    slot freed within ``WEB_LIMIT_WAIT`` seconds (``core.asgi_limits``)."""

    status_code = 503
    code = "server_busy"
    default_message = "The server is busy; retry after the time in Retry-After."
    permanent = False


def _is_pool_timeout(exc: Exception) -> bool:
    """Django wraps the pool's ``PoolTimeout`` (a psycopg ``OperationalError``)
    in its own ``OperationalError``; the pool's is the cause."""
    if not isinstance(exc, DatabaseOperationalError):
        return False
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:  # pragma: no cover - the embedded default has no pool
        return False
    return isinstance(exc.__cause__, PoolTimeout)


def error_body(code: str, message: str, fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "fields": dict(fields or {}),
            "request_id": current_request_id(),
        }
    }


def flatten_fields(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF error details as ``{"a.b[0].c": [messages]}``: the ``fields`` of the error shape."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            # DRF keys the errors of list items by index: {"orders": {2: {...}}}.
            name = f"{prefix}[{key}]" if isinstance(key, int) else f"{prefix}.{key}" if prefix else str(key)
            out.update(flatten_fields(value, name))
    elif isinstance(detail, list) and detail and all(isinstance(item, Mapping | list) for item in detail):
        for index, item in enumerate(detail):
            out.update(flatten_fields(item, f"{prefix}[{index}]" if prefix else f"[{index}]"))
    elif isinstance(detail, list):
        out[prefix or "non_field_errors"] = [str(item) for item in detail]
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


_DRF_CODES: dict[type[drf.APIException], tuple[int, str]] = {
    drf.ParseError: (400, "parse_error"),
    drf.AuthenticationFailed: (401, "authentication_failed"),
    drf.NotAuthenticated: (401, "not_authenticated"),
    drf.PermissionDenied: (403, "permission_denied"),
    drf.NotFound: (404, "not_found"),
    drf.MethodNotAllowed: (405, "method_not_allowed"),
    drf.NotAcceptable: (406, "not_acceptable"),
    drf.UnsupportedMediaType: (415, "unsupported_media_type"),
    drf.Throttled: (429, "throttled"),
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``: every failure in the project's error shape."""
    headers: dict[str, str] = {}
    if _is_pool_timeout(exc):
        logger.warning("no pooled database connection within DB_POOL_TIMEOUT: answering 503")
        exc = DatabaseBusy(retry_after=DATABASE_BUSY_RETRY_AFTER)
    if isinstance(exc, DomainError):
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status_code, headers=headers)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(error_body("request_too_large", f"The request body is larger than {limit} bytes."), status=413)
    if isinstance(exc, TooManyFieldsSent):
        return Response(error_body("bad_request", "Too many fields."), status=400)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = drf.ValidationError(detail=getattr(exc, "message_dict", None) or exc.messages)

    if isinstance(exc, drf.ValidationError):
        fields = flatten_fields(exc.detail)
        non_field = fields.pop("non_field_errors", None)
        message = non_field[0] if non_field else "The request is not valid."
        if non_field and len(non_field) > 1:
            fields["non_field_errors"] = non_field
        return Response(error_body("validation_error", message, fields), status=422)

    if isinstance(exc, drf.APIException):
        status, code = exc.status_code, exc.default_code
        for exc_type, (mapped_status, mapped_code) in _DRF_CODES.items():
            if isinstance(exc, exc_type):
                status, code = mapped_status, mapped_code
                break
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        wait = getattr(exc, "wait", None)
        if wait is not None:
            headers["Retry-After"] = str(int(wait))
        detail = exc.detail
        message = str(detail) if not isinstance(detail, dict | list) else "The request was refused."
        if status == 401 and isinstance(exc, drf.NotAuthenticated):
            # DRF answers 403 when no authenticator offers a challenge; ours always does.
            headers.setdefault("WWW-Authenticate", 'ApiKey realm="api"')
        return Response(error_body(code, message), status=status, headers=headers)

    logger.exception("unhandled error in API view")
    return Response(error_body("internal_error", "Internal server error."), status=500)


def json_error_response(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status)
