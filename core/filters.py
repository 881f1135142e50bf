"""Shared list filters."""

from __future__ import annotations

import django_filters
from django import forms

from core.urls import MAX_ID


class IdFilter(django_filters.NumberFilter):
    """An object id: a whole number that a 64-bit id column can hold; anything
    else is refused (422) before it reaches a query (SQLite overflows on it)."""

    field_class = forms.IntegerField

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
