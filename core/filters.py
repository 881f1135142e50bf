"""Shared list filters."""

from __future__ import annotations

from datetime import UTC, datetime

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


class _UtcIsoDateTimeField(django_filters.fields.IsoDateTimeField):
    def to_python(self, value: object) -> datetime | None:
        moment = super().to_python(value)
        if moment is None or moment.tzinfo is None:
            return moment
        try:
            # Offsets PostgreSQL cannot store (beyond ±15:59) and moments that leave
            # the calendar once in UTC are refused here, not by the database (a 500).
            return moment.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("Out of range.", code="invalid") from None


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 time, compared in UTC; one no column can hold is refused (422)."""

    field_class = _UtcIsoDateTimeField
