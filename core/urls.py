"""Paths answer exactly as written and with one trailing slash; never by redirect.

Path parameters go through converters that refuse what no object can be named
by, so such a path falls through to the JSON (or UDF) 404 instead of reaching a
query: ids beyond a 64-bit signed integer, and text with a NUL byte (PostgreSQL
refuses it) or a lone surrogate (it cannot be encoded).
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path, register_converter

MAX_ID = 2**63 - 1  # a BigAutoField holds no more


def has_unencodable_text(value: str) -> bool:
    """A NUL byte or a lone surrogate: neither can be stored, so none can be a name."""
    if "\x00" in value:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class IdConverter:
    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValueError("beyond a 64-bit id")  # the pattern does not match: 404
        return number

    def to_url(self, value: int) -> str:
        return str(value)


class TextPathConverter:
    """Like ``path`` (slashes allowed, e.g. ``BTC/USDT``), refusing unstorable text."""

    regex = ".+"

    def to_python(self, value: str) -> str:
        if has_unencodable_text(value):
            raise ValueError("unstorable text")
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(IdConverter, "id")
register_converter(TextPathConverter, "textpath")


def route(pattern: str, view: Any, name: str | None = None) -> list[URLPattern]:
    stripped = pattern.rstrip("/")
    return [path(stripped, view, name=name), path(stripped + "/", view)]
