"""The upstream KIS terminal's endpoints, kept for its users: token and approval
key status and forced refreshes, for the caller's KIS account or a named one,
against the fake KIS server over real sockets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from brokers.kis.fake import FakeKisServer
from brokers.services import broker_account_create
from tests.kis_support import APP_KEY, APP_SECRET, HTS_ID, fake_kis, kis_account

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fake(settings) -> Iterator[FakeKisServer]:
    with fake_kis(settings, hts_id=HTS_ID) as server:
        yield server


def assert_no_secret(response, *values: str) -> None:
    for value in (APP_KEY, APP_SECRET, *values):
        assert value not in response.content.decode(), "a secret in the answer"


def test_status_of_my_only_kis_account_shows_state_and_expiry_never_values(alice, alice_api, fake):
    account = kis_account(alice, hts_id=HTS_ID)
    broker_account_create(owner=alice, label="paper")  # other kinds do not count

    before = alice_api.get("/api/v1/auth/kis/status")
    assert before.status_code == 200, before.json()
    body = before.json()
    assert body["account_id"] == account.pk
    assert body["environment"] == "paper"
    assert body["configured"] is True
    assert body["fill_notices"] == "websocket"
    assert body["access_token"]["present"] is False
    assert body["approval_key"]["present"] is False
    assert fake.calls["/oauth2/tokenP"] == 0  # reading the status asks nothing of KIS

    refreshed = alice_api.post("/api/v1/auth/kis/token/refresh")
    assert refreshed.status_code == 200, refreshed.json()
    token = refreshed.json()["access_token"]
    assert token["present"] is True and token["valid"] is True
    assert token["expires_at"] and token["issued_at"]
    assert fake.calls["/oauth2/tokenP"] == 1

    from brokers.kis.client import KisClient, kis_config_for

    value = KisClient(kis_config_for(account)).access_token()  # the cached token: no new issue
    assert fake.calls["/oauth2/tokenP"] == 1
    after = alice_api.get("/api/v1/auth/kis/status")
    assert after.json()["access_token"]["expires_at"] == token["expires_at"]
    assert_no_secret(refreshed, value)
    assert_no_secret(after, value)


def test_a_second_token_refresh_within_the_minute_is_503_with_retry_after(alice, alice_api, fake):
    kis_account(alice, hts_id=HTS_ID)
    assert alice_api.post("/api/v1/auth/kis/token/refresh").status_code == 200

    again = alice_api.post("/api/v1/auth/kis/token/refresh")
    assert again.status_code == 503
    assert 1 <= int(again["Retry-After"]) <= 60
    assert again.json()["error"]["code"] == "broker_busy"
    assert fake.calls["/oauth2/tokenP"] == 1  # KIS was not asked again


def test_approval_key_refresh_issues_one_key_and_respects_the_minute(alice, alice_api, fake):
    account = kis_account(alice, hts_id=HTS_ID)
    first = alice_api.post(f"/api/v1/accounts/{account.pk}/kis/approval/refresh")
    assert first.status_code == 200, first.json()
    assert first.json()["approval_key"]["present"] is True
    assert first.json()["access_token"]["present"] is False  # the approval key needs no access token
    assert fake.calls["/oauth2/Approval"] == 1

    again = alice_api.post(f"/api/v1/accounts/{account.pk}/kis/approval/refresh")
    assert again.status_code == 503 and "Retry-After" in again
    assert fake.calls["/oauth2/Approval"] == 1


def test_per_account_paths_answer_for_the_account_named(alice, alice_api, fake):
    first = kis_account(alice, hts_id=HTS_ID, label="one")
    second = kis_account(alice, hts_id=HTS_ID, label="two", broker_account_number="50999999")
    status = alice_api.get(f"/api/v1/accounts/{second.pk}/kis/status/")
    assert status.status_code == 200
    assert status.json()["account_id"] == second.pk
    refreshed = alice_api.post(f"/api/v1/accounts/{first.pk}/kis/token/refresh/", {}, format="json")
    assert refreshed.status_code == 200
    assert refreshed.json()["account_id"] == first.pk


def test_several_kis_accounts_need_account_id(alice, alice_api, fake):
    first = kis_account(alice, hts_id=HTS_ID, label="one")
    second = kis_account(alice, hts_id=HTS_ID, label="two", broker_account_number="50999999")

    for method, path in (("get", "status"), ("post", "token/refresh"), ("post", "approval/refresh")):
        response = getattr(alice_api, method)(f"/api/v1/auth/kis/{path}")
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "kis_account_ambiguous"
        assert "account_id" in error["fields"]
        assert f"{first.pk}, {second.pk}" in error["message"]
    assert fake.calls["/oauth2/tokenP"] == 0

    named = alice_api.get(f"/api/v1/auth/kis/status?account_id={second.pk}")
    assert named.status_code == 200 and named.json()["account_id"] == second.pk


def test_no_kis_account_is_409_asking_for_one(alice, alice_api):
    broker_account_create(owner=alice, label="paper")
    response = alice_api.get("/api/v1/auth/kis/status")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "kis_account_required"


def test_another_users_or_a_paper_account_is_not_found(alice, alice_api, bob, fake):
    bobs = kis_account(bob, hts_id=HTS_ID)
    paper = broker_account_create(owner=alice, label="paper")
    for account_id in (bobs.pk, paper.pk, 987654):
        assert alice_api.get(f"/api/v1/auth/kis/status?account_id={account_id}").status_code == 404
        assert alice_api.get(f"/api/v1/accounts/{account_id}/kis/status").status_code == 404
        response = alice_api.post(f"/api/v1/accounts/{account_id}/kis/token/refresh")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert fake.calls["/oauth2/tokenP"] == 0


@pytest.mark.parametrize("query", ["account_id=abc", "account_id=0", "account_id=99999999999999999999", "acount_id=1"])
def test_a_bad_account_id_is_422(alice, alice_api, query):
    response = alice_api.get(f"/api/v1/auth/kis/status?{query}")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_a_refresh_body_with_fields_is_refused(alice, alice_api, fake):
    account = kis_account(alice, hts_id=HTS_ID)
    response = alice_api.post(f"/api/v1/accounts/{account.pk}/kis/token/refresh", {"force": True}, format="json")
    assert response.status_code == 422
    assert fake.calls["/oauth2/tokenP"] == 0


def test_read_scope_key_reads_the_status_but_cannot_refresh(alice, alice_read_key, fake):
    account = kis_account(alice, hts_id=HTS_ID)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=alice_read_key)
    assert client.get("/api/v1/auth/kis/status").status_code == 200
    assert client.get(f"/api/v1/accounts/{account.pk}/kis/status").status_code == 200
    for path in ("/api/v1/auth/kis/token/refresh", f"/api/v1/accounts/{account.pk}/kis/approval/refresh"):
        response = client.post(path)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
    assert fake.calls["/oauth2/tokenP"] == 0 and fake.calls["/oauth2/Approval"] == 0


def test_anonymous_is_401(api):
    assert api.get("/api/v1/auth/kis/status").status_code == 401
    assert api.post("/api/v1/auth/kis/token/refresh").status_code == 401


def test_an_account_without_credentials_reports_it_and_refuses_refresh(alice, alice_api, fake):
    account = kis_account(alice, credentials=None)
    status = alice_api.get("/api/v1/auth/kis/status").json()
    assert status["configured"] is False
    assert status["missing_credentials"] == ["app_key", "app_secret"]
    assert status["access_token"] is None
    assert status["fill_notices"] == "polling"
    response = alice_api.post(f"/api/v1/accounts/{account.pk}/kis/token/refresh")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "broker_not_configured"
    assert fake.calls["/oauth2/tokenP"] == 0


def test_credentials_kis_refuses_answer_in_the_error_shape_without_the_secret(alice, alice_api, fake):
    wrong = "wrong-secret-" + "w" * 100
    account = kis_account(alice, hts_id=HTS_ID, app_secret=wrong)
    response = alice_api.post(f"/api/v1/accounts/{account.pk}/kis/token/refresh")
    assert response.status_code in (409, 422)
    assert response.json()["error"]["code"] in ("broker_auth", "broker_rejected")
    assert_no_secret(response, wrong)
    status = alice_api.get(f"/api/v1/accounts/{account.pk}/kis/status").json()
    assert status["access_token"]["present"] is False
    assert status["access_token"]["last_error"]
    assert wrong not in status["access_token"]["last_error"]


def test_kis_unreachable_is_503_not_500(alice, alice_api, settings):
    from tests.servers import closed_port

    settings.KIS_PAPER_REST_URL = f"http://127.0.0.1:{closed_port()}"
    account = kis_account(alice, hts_id=HTS_ID)
    response = alice_api.post(f"/api/v1/accounts/{account.pk}/kis/token/refresh")
    assert response.status_code in (503, 504)
    assert response.json()["error"]["code"] == "broker_unavailable"


def test_the_openapi_document_has_the_upstream_paths(api):
    schema = api.get("/api/v1/openapi.json").json()
    for path, method in (
        ("/api/v1/auth/kis/status", "get"),
        ("/api/v1/auth/kis/token/refresh", "post"),
        ("/api/v1/auth/kis/approval/refresh", "post"),
        ("/api/v1/accounts/{id}/kis/status", "get"),
        ("/api/v1/accounts/{id}/kis/token/refresh", "post"),
        ("/api/v1/accounts/{id}/kis/approval/refresh", "post"),
    ):
        operation = schema["paths"][path][method]
        assert "200" in operation["responses"]
        if method == "post":
            assert "503" in operation["responses"]


def test_every_answer_matches_the_openapi_document(alice, alice_api, alice_read_key, fake):
    from drf_spectacular.generators import SchemaGenerator

    from tests.test_schema_conformance import _conforms

    openapi = SchemaGenerator().get_schema(request=None, public=True)
    status, refresh = "/api/v1/auth/kis/status", "/api/v1/auth/kis/token/refresh"
    _conforms(openapi, status, "get", alice_api.get(status))  # 409: none
    _conforms(openapi, status, "get", alice_api.get(status + "?account_id=x"))  # 422
    _conforms(openapi, status, "get", alice_api.get(status + "?account_id=987654"))  # 404
    account = kis_account(alice, hts_id=HTS_ID)
    _conforms(openapi, status, "get", alice_api.get(status))  # 200, before any token
    _conforms(openapi, refresh, "post", alice_api.post(refresh))  # 200
    _conforms(openapi, refresh, "post", alice_api.post(refresh))  # 503 inside the minute
    _conforms(openapi, "/api/v1/accounts/{id}/kis/status", "get", alice_api.get(f"/api/v1/accounts/{account.pk}/kis/status"))
    reader = APIClient()
    reader.credentials(HTTP_X_API_KEY=alice_read_key)
    _conforms(openapi, refresh, "post", reader.post(refresh))  # 403
