"""drf-spectacular: bodies that are one object or an array of them."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from oms.api.serializers import CommandResultSerializer
from oms.specs.schema import COMMAND_ENVELOPES


class CommandOrBatchSerializer(serializers.Serializer):
    """Schema only: a command object, or an array of commands of one account."""


class CommandResultOrBatchSerializer(serializers.Serializer):
    """Schema only: a result object for an object, an array for an array."""


class CommandOrBatchExtension(OpenApiSerializerExtension):
    target_class = CommandOrBatchSerializer

    def map_serializer(self, auto_schema: AutoSchema, direction: Any) -> dict[str, Any]:
        refs = {name: auto_schema.resolve_serializer(envelope, direction).ref for name, envelope in COMMAND_ENVELOPES.items()}
        item = {
            "oneOf": list(refs.values()),
            "discriminator": {"propertyName": "command", "mapping": {name: ref["$ref"] for name, ref in refs.items()}},
        }
        return {"oneOf": [item, {"type": "array", "items": item, "minItems": 1}]}


class CommandResultOrBatchExtension(OpenApiSerializerExtension):
    target_class = CommandResultOrBatchSerializer

    def map_serializer(self, auto_schema: AutoSchema, direction: Any) -> dict[str, Any]:
        item = auto_schema.resolve_serializer(CommandResultSerializer, direction).ref
        return {"oneOf": [item, {"type": "array", "items": item, "minItems": 1}]}


def document_order_links(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: an account of the list links to sending it an
    order; an accepted order links to reading, canceling and changing it."""
    from core.schema import add_links

    add_links(
        result,
        "accounts_list",
        "200",
        {
            "SendOrder": {
                "operationId": "accounts_orders_send",
                "parameters": {"id": "$response.body#/results/0/id"},
                "description": "Send an order to the first account listed.",
            }
        },
    )

    order = {"id": "$response.body#/order_id"}
    add_links(
        result,
        "accounts_orders_send",
        "202",
        {
            "GetOrder": {"operationId": "orders_retrieve", "parameters": order, "description": "The order accepted."},
            "CancelOrder": {"operationId": "orders_cancel", "parameters": order, "description": "Cancel the order accepted."},
            "ChangeOrder": {"operationId": "orders_change", "parameters": order, "description": "Change the order accepted."},
        },
    )
    return result
