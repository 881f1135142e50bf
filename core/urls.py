"""Paths answer exactly as written and with one trailing slash; never by redirect."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path


def route(pattern: str, view: Any, name: str | None = None) -> list[URLPattern]:
    stripped = pattern.rstrip("/")
    return [path(stripped, view, name=name), path(stripped + "/", view)]
