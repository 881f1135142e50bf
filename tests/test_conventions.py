"""REST conventions shared by every endpoint: the error shape, slashes, request
ids, pagination, schema, logging, metrics, CORS."""

from __future__ import annotations

import json
import logging

import pytest
from django.test import override_settings

from brokers.services import broker_account_create
from core.logging import JsonFormatter, MaskSecretsFilter, RequestIdFilter

pytestmark = pytest.mark.django_db


def test_malformed_json_is_400_parse_error_and_changes_nothing(alice_api):
    response = alice_api.generic("POST", "/api/v1/accounts", '{"label": ', content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "parse_error"
    assert error["request_id"] == response["X-Request-ID"]
    assert alice_api.get("/api/v1/accounts").json()["results"] == []


def test_wrong_media_type_is_415(alice_api):
    response = alice_api.generic("POST", "/api/v1/accounts", "label=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_method_not_allowed_is_405_in_the_error_shape(alice_api):
    response = alice_api.put("/api/v1/me", {}, format="json")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_unknown_api_path_is_404_json_not_html(alice_api, api):
    for client in (alice_api, api):
        response = client.get("/api/v1/no-such-thing")
        assert response.status_code == 404
        assert response["Content-Type"].startswith("application/json")
        assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "path", ["/api/v1/me", "/api/v1/me/", "/api/v1/accounts", "/api/v1/accounts/", "/api/v1/health", "/api/v1/health/"]
)
def test_paths_answer_with_and_without_a_trailing_slash_never_by_redirect(alice_api, path):
    response = alice_api.get(path)
    assert response.status_code == 200


def test_request_id_is_accepted_from_the_client_and_echoed(alice_api):
    response = alice_api.get("/api/v1/accounts/999", HTTP_X_REQUEST_ID="client-req-42")
    assert response["X-Request-ID"] == "client-req-42"
    assert response.json()["error"]["request_id"] == "client-req-42"


def test_unsafe_request_id_is_replaced_by_a_generated_one(alice_api):
    response = alice_api.get("/api/v1/me", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert response["X-Request-ID"] != "bad id\nwith newline"
    assert len(response["X-Request-ID"]) == 32


def test_lists_paginate_by_cursor(alice_api, alice):
    for i in range(5):
        broker_account_create(owner=alice, label=f"paper {i}")
    seen = []
    url = "/api/v1/accounts?limit=2"
    while True:
        body = alice_api.get(url).json()
        assert set(body) == {"results", "next"}
        seen += [a["label"] for a in body["results"]]
        if body["next"] is None:
            break
        assert "://" not in body["next"]  # a cursor, not a URL
        url = f"/api/v1/accounts?limit=2&cursor={body['next']}"
    assert sorted(seen) == [f"paper {i}" for i in range(5)]


def test_openapi_schema_documents_each_path_once(api):
    response = api.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    paths = schema["paths"]
    for expected in [
        "/api/v1/me",
        "/api/v1/api-keys",
        "/api/v1/api-keys/{id}",
        "/api/v1/accounts",
        "/api/v1/accounts/{id}",
        "/api/v1/health/ready",
    ]:
        assert expected in paths, expected
    assert not [p for p in paths if p.endswith("/") and p.rstrip("/") in paths]
    assert "ApiKeyAuth" in schema["components"]["securitySchemes"]
    create = paths["/api/v1/api-keys"]["post"]
    assert "requestBody" in create and "201" in create["responses"]


@pytest.mark.parametrize("path", ["/api/v1/docs", "/api/v1/redoc"])
def test_api_docs_pages_are_public(api, path):
    assert api.get(path).status_code == 200


def test_json_log_lines_carry_the_request_id_and_mask_secrets(alice_key):
    record = logging.LogRecord("terminal", logging.INFO, __file__, 1, "header X-API-Key: %s password=%r", (alice_key, "hunter2"), None)
    record.payload = {"api_key": alice_key, "symbol": "AAPL", "nested": {"app_secret": "s3cr3t"}}
    from core.context import request_id_var

    token = request_id_var.set("req-log-1")
    try:
        for log_filter in (RequestIdFilter(), MaskSecretsFilter()):
            log_filter.filter(record)
    finally:
        request_id_var.reset(token)
    line = JsonFormatter("%(message)s %(request_id)s").format(record)
    parsed = json.loads(line)
    assert parsed["request_id"] == "req-log-1"
    secret_part = alice_key.rsplit("_", 1)[1]
    assert secret_part not in line and "hunter2" not in line and "s3cr3t" not in line
    assert parsed["payload"]["symbol"] == "AAPL"


def test_request_log_line_is_json_with_request_id(alice_api, caplog):
    with caplog.at_level(logging.INFO, logger="terminal.request"):
        alice_api.get("/api/v1/me", HTTP_X_REQUEST_ID="req-xyz")
    records = [r for r in caplog.records if r.name == "terminal.request"]
    assert records and records[-1].status == 200 and records[-1].path == "/api/v1/me"


def test_metrics_are_internal_only(client):
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    refused = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    with override_settings(METRICS_TOKEN="tok-123"):
        assert client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer tok-123").status_code == 200
        assert client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer nope").status_code == 403
    assert b"django_http_requests" in client.get("/metrics", REMOTE_ADDR="127.0.0.1").content


@override_settings(CORS_ALLOWED_ORIGINS=["https://app.example.com"])
def test_cors_allows_configured_origins_only(api):
    allowed = api.options("/api/v1/health", HTTP_ORIGIN="https://app.example.com", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
    assert allowed["Access-Control-Allow-Origin"] == "https://app.example.com"
    other = api.get("/api/v1/health", HTTP_ORIGIN="https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in other


def test_throttled_requests_get_429_in_the_error_shape(alice_api):
    from django.core.cache import cache

    cache.clear()
    rates = {"anon": "600/min", "user": "100000/min", "api_keys": "2/min", "orders": "100000/min"}
    from rest_framework.throttling import ScopedRateThrottle

    original = ScopedRateThrottle.THROTTLE_RATES
    ScopedRateThrottle.THROTTLE_RATES = rates
    try:
        codes = [alice_api.get("/api/v1/api-keys").status_code for _ in range(3)]
    finally:
        ScopedRateThrottle.THROTTLE_RATES = original
        cache.clear()
    assert codes[:2] == [200, 200]
    assert codes[2] == 429
