"""drf-spectacular: bodies that are one object or an array of them."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from oms.api.serializers import CommandResultSerializer, CommandSerializer


class CommandOrBatchSerializer(serializers.Serializer):
    """Schema only: a command object, or an array of commands of one account."""


class CommandResultOrBatchSerializer(serializers.Serializer):
    """Schema only: a result object for an object, an array for an array."""


class _OneOrMany(OpenApiSerializerExtension):
    item: type[serializers.Serializer]

    def map_serializer(self, auto_schema: AutoSchema, direction: Any) -> dict[str, Any]:
        item = auto_schema.resolve_serializer(self.item, direction).ref
        return {"oneOf": [item, {"type": "array", "items": item, "minItems": 1}]}


class CommandOrBatchExtension(_OneOrMany):
    target_class = CommandOrBatchSerializer
    item = CommandSerializer


class CommandResultOrBatchExtension(_OneOrMany):
    target_class = CommandResultOrBatchSerializer
    item = CommandResultSerializer
