"""The OpenAPI document is true for the read-only endpoints (issue 8, part 5):
each answer, success or error, validates against the schema the document gives
its status. A quick check; the schemathesis run is the thorough one."""

from __future__ import annotations

import time
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from drf_spectacular.generators import SchemaGenerator

from marketdata.quotes import quote_store
from marketdata.services import instrument_upsert
from marketdata.types import Quote

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` as JSON Schema."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        if "type" in out and not any(k in out for k in ("allOf", "oneOf", "anyOf", "$ref")):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _conforms(openapi: dict[str, Any], template: str, method: str, response) -> None:
    operation = openapi["paths"][template][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, f"{method.upper()} {template}: {response.status_code} is not documented"
    schema = documented["content"]["application/json"]["schema"]
    root = _json_schema({**schema, "components": openapi["components"]})
    jsonschema.validate(response.json(), root)


@pytest.fixture
def instruments(db) -> None:
    instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    quote_store(Quote(symbol="AAPL", time=time.time(), last=Decimal(100), bid=Decimal("99.99"), ask=Decimal("100.01")))
    index = instrument_upsert(symbol="DEMO:IDX", type="index", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    expiry = date.today() + timedelta(days=30)
    instrument_upsert(
        symbol="DEMO:IDX-C100",
        type="option",
        tick_size=Decimal("0.01"),
        lot_size=Decimal(1),
        underlying=index,
        option_type="call",
        strike=Decimal(100),
        expiry=expiry,
    )


@pytest.mark.parametrize(
    "template,path",
    [
        ("/api/v1/symbols", "/api/v1/symbols"),
        ("/api/v1/symbols", "/api/v1/symbols?type=bond"),
        ("/api/v1/symbols/{symbol}", "/api/v1/symbols/AAPL"),
        ("/api/v1/symbols/{symbol}", "/api/v1/symbols/DEMO:IDX-C100"),
        ("/api/v1/symbols/{symbol}", "/api/v1/symbols/NOPE"),
        ("/api/v1/quotes", "/api/v1/quotes?symbols=AAPL,NOPE"),
        ("/api/v1/history-bars", "/api/v1/history-bars?symbol=AAPL&resolution=1&from=NaN"),
        ("/api/v1/datafeed/quotes", "/api/v1/datafeed/quotes?symbols=AAPL,NOPE"),
        ("/api/v1/me", "/api/v1/me"),
        ("/api/v1/api-keys", "/api/v1/api-keys"),
        ("/api/v1/accounts", "/api/v1/accounts"),
        ("/api/v1/accounts/{id}", "/api/v1/accounts/999999"),
        ("/api/v1/oms/deals", "/api/v1/oms/deals?account_id=99999999999999999999"),
        ("/api/v1/oms/orders/open", "/api/v1/oms/orders/open"),
        ("/api/v1/orders/{id}", "/api/v1/orders/999999"),
        ("/api/v1/health", "/api/v1/health"),
        ("/api/v1/workspaces/default", "/api/v1/workspaces/default"),
        ("/api/v1/workspaces", "/api/v1/workspaces"),
        ("/api/v1/workspaces/{id}", "/api/v1/workspaces/999999"),
        ("/api/v1/watchlists", "/api/v1/watchlists"),
        ("/api/v1/watchlists/{id}", "/api/v1/watchlists/999999"),
        ("/api/v1/me/settings", "/api/v1/me/settings"),
        ("/api/v1/version", "/api/v1/version"),
    ],
)
def test_read_only_answers_match_the_openapi_document(openapi, alice_api, instruments, template, path):
    _conforms(openapi, template, "get", alice_api.get(path))


def test_anonymous_and_malformed_answers_are_documented(openapi, api, alice_api, settings):
    _conforms(openapi, "/api/v1/me", "get", api.get("/api/v1/me"))
    _conforms(
        openapi, "/api/v1/accounts", "post", alice_api.post("/api/v1/accounts", data="[" * 100 + "]" * 100, content_type="application/json")
    )


def test_workspace_and_watchlist_answers_match_the_document(openapi, alice_api, instruments):
    workspace = alice_api.get("/api/v1/workspaces/default")
    _conforms(openapi, "/api/v1/workspaces/default", "get", workspace)
    instrument_upsert(symbol="BINANCE:BTC/USDT", type="crypto", tick_size=Decimal("0.01"), lot_size=Decimal("0.001"))
    pk = workspace.json()["layout"]["watchlist_id"]
    _conforms(openapi, "/api/v1/watchlists", "get", alice_api.get("/api/v1/watchlists"))
    _conforms(openapi, "/api/v1/workspaces", "get", alice_api.get("/api/v1/workspaces"))
    items = "/api/v1/watchlists/{id}/items"
    added = alice_api.post(f"/api/v1/watchlists/{pk}/items", {"symbol": "BINANCE:BTC/USDT"}, format="json")
    assert added.status_code == 201
    _conforms(openapi, items, "post", added)
    again = alice_api.post(f"/api/v1/watchlists/{pk}/items", {"symbol": "BINANCE:BTC/USDT"}, format="json")
    assert again.status_code == 200
    _conforms(openapi, items, "post", again)
    _conforms(openapi, items, "post", alice_api.post(f"/api/v1/watchlists/{pk}/items", {"symbol": "NOPE"}, format="json"))
    symbols = list(reversed(again.json()["symbols"]))
    _conforms(openapi, items, "put", alice_api.put(f"/api/v1/watchlists/{pk}/items", {"symbols": symbols}, format="json"))
    removed = alice_api.delete(f"/api/v1/watchlists/{pk}/items/BINANCE:BTC/USDT")
    _conforms(openapi, "/api/v1/watchlists/{id}/items/{symbol}", "delete", removed)
    _conforms(openapi, "/api/v1/me/settings", "patch", alice_api.patch("/api/v1/me/settings", {"timezone": "Nowhere"}, format="json"))
