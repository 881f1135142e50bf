"""The upstream backends' paths (healthz, openapi.json, the AsyncAPI page) and
API docs that load nothing from a CDN: public, answered by a real daphne."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings

from streams.asyncapi import document
from streams.frames import CLOSE_CODES

pytestmark = pytest.mark.django_db(transaction=True)


class AssetLinks(HTMLParser):
    """Every URL a page loads by itself (scripts, styles, icons, images, frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("script", "img", "iframe") and values.get("src"):
            self.urls.append(values["src"] or "")
        if tag == "link" and values.get("href"):
            self.urls.append(values["href"] or "")


def assets_of(html: str) -> list[str]:
    parser = AssetLinks()
    parser.feed(html)
    # Inline scripts may also name URLs (Redoc's bundle, Swagger UI's init script).
    parser.urls += re.findall(r"""["'](https?://[^"']+\.(?:js|css))["']""", html)
    return parser.urls


@pytest.mark.parametrize("path", ["/api/v1/healthz", "/api/v1/healthz/"])
def test_healthz_answers_readiness_and_version_without_credentials(live_server_process, path):
    response = requests.get(live_server_process.url + path, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["version"] == settings.VERSION
    assert set(body["checks"]) >= {"database", "cache", "channel_layer", "celery_broker"}


def test_healthz_names_the_failing_dependency_with_503(api, monkeypatch):
    from core import health

    monkeypatch.setitem(health.CHECKS, "database", lambda: "unreachable: OperationalError")
    response = api.get("/api/v1/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["error"]["code"] == "not_ready"
    assert body["failing"] == ["database"]
    assert body["version"] == settings.VERSION


@pytest.mark.parametrize("path", ["/api/v1/openapi.json", "/api/v1/openapi.json/"])
def test_openapi_json_is_the_public_openapi_document(live_server_process, path):
    response = requests.get(live_server_process.url + path, timeout=30)
    assert response.status_code == 200
    assert "json" in response.headers["Content-Type"]
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/oms/commands" in schema["paths"]
    assert "/api/v1/healthz" in schema["paths"]
    assert schema == requests.get(live_server_process.url + "/api/v1/schema?format=json", timeout=30).json()


@pytest.mark.parametrize("path", ["/api/v1/docs", "/api/v1/redoc", "/api/v1/ws/asyncapi"])
def test_doc_pages_load_every_asset_from_this_server(live_server_process, path):
    page = requests.get(live_server_process.url + path, timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    for url in assets_of(page.text):
        parts = urlsplit(url)
        if parts.scheme == "data":  # inline (the layout's icon): loads nothing from anywhere
            continue
        assert not parts.netloc, f"{path} loads {url} from another host"
        asset = requests.get(live_server_process.url + url, timeout=10)
        assert asset.status_code == 200, url


def test_asyncapi_page_documents_channels_ops_schemas_and_close_codes(live_server_process):
    page = requests.get(live_server_process.url + "/api/v1/ws/asyncapi/", timeout=10)
    assert page.status_code == 200
    html = page.text
    for channel in (
        "quotes:{symbol}",
        "bars:{symbol}:{resolution}",
        "orders:{account_id}",
        "positions:{account_id}",
        "funds:{account_id}",
        "system",
    ):
        assert f"<code>{channel}</code>" in html
    for op in ("auth", "subscribe", "unsubscribe", "bars.subscribe", "ping", "pong", "command"):
        assert f"<code>{op}</code>" in html
    for code in CLOSE_CODES:
        assert f"<code>{code}</code>" in html
    # Message schemas are shown whole: the quote's fields, not a bare reference.
    assert "&quot;bid_size&quot;" in html
    assert "#/components/schemas" not in html


def test_asyncapi_page_refuses_writes_in_the_error_shape(api):
    response = api.post("/api/v1/ws/asyncapi", {})
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_every_reference_in_the_asyncapi_document_resolves():
    doc = document()
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    assert refs
    for ref in refs:
        target: object = doc
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(target, dict) and part in target, f"{ref} does not resolve"
            target = target[part]


def test_upstream_kis_paths_answer_the_x_api_key_header_as_its_readme_showed(live_server_process, alice, alice_key):
    """``curl -H "X-API-Key: ..." .../api/v1/auth/kis/status``: a user's own key
    in the upstream's header; the status asks KIS nothing."""
    from brokers.services import broker_account_create

    headers = {"X-API-Key": alice_key}
    none = requests.get(live_server_process.url + "/api/v1/auth/kis/status", headers=headers, timeout=10)
    assert none.status_code == 409 and none.json()["error"]["code"] == "kis_account_required"
    account = broker_account_create(
        owner=alice,
        kind="kis",
        label="KIS",
        base_currency="KRW",
        broker_account_number="50123456",
        broker_product_code="01",
        credentials={"app_key": "PSupstreamAppKey0123", "app_secret": "upstream-secret-0123456789"},
    )
    for path in ("/api/v1/auth/kis/status", f"/api/v1/accounts/{account.pk}/kis/status/"):
        status = requests.get(live_server_process.url + path, headers=headers, timeout=10)
        assert status.status_code == 200, status.text
        body = status.json()
        assert body["account_id"] == account.pk and body["configured"] is True
        assert body["access_token"]["present"] is False and body["approval_key"]["present"] is False
        assert "upstream-secret" not in status.text and "PSupstreamAppKey" not in status.text
    anonymous = requests.post(live_server_process.url + "/api/v1/auth/kis/token/refresh", timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "not_authenticated"
