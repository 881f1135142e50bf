"""Schemas derived from the specs, never written twice.

* ``COMMAND_ENVELOPES``: one envelope serializer per command (its ``payload``
  is that command's spec), for the OpenAPI body of ``POST /oms/commands``
  (a ``oneOf`` discriminated by ``command``);
* ``json_schema``: a serializer as a self-contained JSON Schema, rendered
  by drf-spectacular (the OpenAPI generator) and inlined, for the AsyncAPI
  document: the ``command`` message and the account channels' payloads.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ComponentRegistry
from rest_framework import serializers
from rest_framework.views import APIView

from oms.specs.commands import PAYLOAD_SPECS, PayloadSpec
from oms.specs.fields import ChoiceField, IdField, RequestIdField


def _envelope(name: str, spec: type[PayloadSpec]) -> type[PayloadSpec]:
    takes_fields = any(f.required for f in spec().fields.values())
    attrs: dict[str, Any] = {
        "__module__": __name__,
        "__doc__": f"The ``{name}`` command: ``payload`` is its {spec.__name__}.",
        "account_id": IdField(),
        "command": ChoiceField(choices=[name]),
        "request_id": RequestIdField(required=False, allow_null=True, help_text="Echoed in the result."),
        "payload": spec(required=takes_fields),
    }
    return type("".join(part.title() for part in name.split("_")) + "Command", (PayloadSpec,), attrs)


#: Command name -> the documented envelope of that command.
COMMAND_ENVELOPES: dict[str, type[PayloadSpec]] = {name: _envelope(name, spec) for name, spec in PAYLOAD_SPECS.items()}


def _auto_schema() -> AutoSchema:
    auto = AutoSchema()
    auto.registry = ComponentRegistry()
    auto.method = "POST"
    auto.path = auto.path_regex = "/api/v1/ws"
    view = APIView()
    view.request = None  # type: ignore[assignment]
    auto.view = view
    return auto


def _to_json_schema(node: Any, components: dict[str, Any]) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: ``$ref`` inlined, ``nullable`` as a
    ``null`` type, drf-spectacular's ``x-`` keys dropped."""
    if isinstance(node, list):
        return [_to_json_schema(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _to_json_schema(components[node["$ref"].rsplit("/", 1)[1]], components)
    out = {key: _to_json_schema(value, components) for key, value in node.items() if not key.startswith("x-") and key != "nullable"}
    if node.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"oneOf": [out, {"type": "null"}]}
    return out


@cache
def json_schema(serializer: type[serializers.Serializer], direction: Literal["request", "response"] = "response") -> dict[str, Any]:
    """``serializer`` as a self-contained JSON Schema (``direction``:
    ``request`` for what a client sends, ``response`` for what it gets)."""
    auto = _auto_schema()
    ref = auto.resolve_serializer(serializer, direction).ref
    components = auto.registry.build({}).get("schemas", {})
    return _to_json_schema(ref, components)


def command_message_schema() -> dict[str, Any]:
    """The AsyncAPI payload of the WebSocket ``{"op": "command", ...}`` frame."""
    return {
        "allOf": [
            {
                "type": "object",
                "required": ["op"],
                "properties": {
                    "op": {"const": "command"},
                    "idempotency_key": {"type": "string", "maxLength": 128, "description": "As the Idempotency-Key header."},
                },
            },
            {"oneOf": [json_schema(envelope, "request") for envelope in COMMAND_ENVELOPES.values()]},
        ]
    }
