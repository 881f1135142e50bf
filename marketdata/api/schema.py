"""drf-spectacular hooks of the market-data API."""

from __future__ import annotations

from typing import Any


def udf_quote_values_may_be_empty(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """UDF answers ``"v": {}`` for a symbol it cannot quote (``"s": "error"``):
    the values object, or an empty one."""
    quote = result.get("components", {}).get("schemas", {}).get("UdfQuote")
    if quote and "v" in quote.get("properties", {}):
        quote["properties"]["v"] = {
            "oneOf": [{"$ref": "#/components/schemas/UdfQuoteValues"}, {"type": "object", "maxProperties": 0}],
            "description": "The quote's values; an empty object when s is error.",
        }
    return result
