from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers


class StrictMixin:
    """Refuse fields the serializer does not accept for writing."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            fields = self.fields  # type: ignore[attr-defined]
            errors = {}
            for key in data:
                field = fields.get(key)
                if field is None:
                    errors[key] = ["Unknown field."]
                elif field.read_only:
                    errors[key] = ["This field is read-only."]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictSerializer(StrictMixin, serializers.Serializer):
    pass


class StrictModelSerializer(StrictMixin, serializers.ModelSerializer):
    pass


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))  # type: ignore[assignment]
    request_id = serializers.CharField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    """The one error shape (``core.exceptions.error_body``), for the OpenAPI document."""

    error = ErrorDetailSerializer()
