"""Structured JSON logs with the request id on every line and secrets masked."""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from core.context import current_request_id
from core.masking import mask_secrets, mask_text

_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            # django.request logs 4xx/5xx after the middleware returned; it
            # passes the request along, which carries the id.
            request = getattr(record, "request", None)
            record.request_id = current_request_id() or getattr(request, "request_id", None) or "-"
        return True


def _describe_request(request: object) -> str:
    try:
        return repr(request)
    except UnicodeError:  # a path no URL can carry (a lone surrogate): still log the line
        return f"<{type(request).__name__}: {getattr(request, 'method', '?')} {getattr(request, 'path', '')!a}>"


class MaskSecretsFilter(logging.Filter):
    """Masks the rendered message and any ``extra`` fields before formatting."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the line
            message = str(record.msg)
        record.msg = mask_text(message)
        record.args = ()
        if hasattr(record, "request"):
            record.request = _describe_request(record.request)  # never dump a request's headers
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, mask_secrets({key: value})[key])
        return True


class JsonFormatter(_JsonFormatter):
    pass
