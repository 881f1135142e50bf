"""Who may create and revoke API keys (issue 8, part 1): the dashboard session
or a key with the ``keys`` scope; a key never creates a key wider than itself;
revoking a key revokes the keys it created."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.services import api_key_create

pytestmark = pytest.mark.django_db


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client


def _create(client: APIClient, **body) -> dict:
    response = client.post("/api/v1/api-keys", {"name": "child", **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_trade_key_can_neither_create_nor_revoke_keys(alice_api, alice, alice_key):
    before = ApiKey.objects.count()
    response = alice_api.post("/api/v1/api-keys", {"name": "more", "scope": "trade"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert ApiKey.objects.count() == before
    own = ApiKey.objects.get(prefix=alice_key.split("_")[1])
    assert alice_api.delete(f"/api/v1/api-keys/{own.pk}").status_code == 403
    assert alice_api.get("/api/v1/api-keys").status_code == 200  # listing stays open


def test_the_dashboard_session_creates_keys_of_any_scope(alice):
    dashboard = APIClient()
    dashboard.force_login(alice)
    body = _create(dashboard, scopes=["trade", "keys"])
    assert body["scopes"] == ["read", "trade", "keys"] and body["parent_id"] is None
    assert _client(body["key"]).get("/api/v1/me").status_code == 200


def test_a_keys_key_creates_keys_no_wider_than_itself(alice):
    reader = _client(api_key_create(user=alice, name="read+keys", scope="read", manage_keys=True).key)
    child = _create(reader, scope="read")
    assert child["scopes"] == ["read"]
    assert _create(reader, scopes=["read", "keys"])["scopes"] == ["read", "keys"]
    refused = reader.post("/api/v1/api-keys", {"name": "wider", "scopes": ["read", "trade"]}, format="json")
    assert refused.status_code == 403
    assert "scope" in refused.json()["error"]["fields"]
    assert not ApiKey.objects.filter(name="wider").exists()
    # Without the keys scope itself, a child cannot make grandchildren.
    assert _client(child["key"]).post("/api/v1/api-keys", {"name": "x"}, format="json").status_code == 403


def test_a_child_key_never_outlives_its_parent(alice):
    ends = timezone.now() + timedelta(days=1)
    parent = _client(api_key_create(user=alice, name="p", scope="trade", manage_keys=True, expires_at=ends).key)
    child = _create(parent)
    assert ApiKey.objects.get(pk=child["id"]).expires_at == ends
    later = (ends + timedelta(days=1)).isoformat()
    refused = parent.post("/api/v1/api-keys", {"name": "later", "expires_at": later}, format="json")
    assert refused.status_code == 403 and "expires_at" in refused.json()["error"]["fields"]


def test_revoking_a_key_revokes_every_key_it_created(alice):
    dashboard = APIClient()
    dashboard.force_login(alice)
    parent = _create(dashboard, scopes=["trade", "keys"])
    child = _create(_client(parent["key"]), scopes=["trade", "keys"])
    grandchild = _create(_client(child["key"]), scope="trade")
    unrelated = _create(dashboard, scope="trade")
    assert dashboard.delete(f"/api/v1/api-keys/{parent['id']}").status_code == 204
    for revoked in (parent, child, grandchild):
        response = _client(revoked["key"]).get("/api/v1/me")
        assert response.status_code == 401, revoked
    assert _client(unrelated["key"]).get("/api/v1/me").status_code == 200
    statuses = {k["id"]: k["status"] for k in dashboard.get("/api/v1/api-keys").json()["results"]}
    assert [statuses[k["id"]] for k in (parent, child, grandchild, unrelated)] == ["revoked", "revoked", "revoked", "active"]


def test_a_keys_key_revokes_itself_and_its_children_but_not_its_parent_or_siblings(alice):
    dashboard = APIClient()
    dashboard.force_login(alice)
    parent = _create(dashboard, scopes=["trade", "keys"])
    manager = _client(parent["key"])
    first = _create(manager, scopes=["read", "keys"])
    second = _create(manager, scope="read")
    first_client = _client(first["key"])
    assert first_client.delete(f"/api/v1/api-keys/{parent['id']}").status_code == 403
    assert first_client.delete(f"/api/v1/api-keys/{second['id']}").status_code == 403
    assert manager.delete(f"/api/v1/api-keys/{second['id']}").status_code == 204
    assert first_client.delete(f"/api/v1/api-keys/{first['id']}").status_code == 204
    assert manager.get("/api/v1/me").status_code == 200
    assert ApiKey.objects.get(pk=parent["id"]).revoked_at is None
