"""A list filtered by ``?account_id=`` of another user's account (or of no
account) answers 404 ``not_found`` in the error shape, as that account's own
URL does, instead of an empty list: the filter neither tells that the id exists
nor reads as "that account has nothing"."""

from __future__ import annotations

import pytest

from brokers.services import broker_account_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("oms_env")]

LISTS = [
    "/api/v1/oms/orders/open",
    "/api/v1/oms/orders/history",
    "/api/v1/oms/deals",
    "/api/v1/oms/positions/open",
    "/api/v1/oms/positions/history",
]


@pytest.fixture
def accounts(alice, bob):
    mine = broker_account_create(owner=alice, kind="paper", label="mine")
    theirs = broker_account_create(owner=bob, kind="paper", label="theirs")
    return mine, theirs


@pytest.mark.parametrize("path", LISTS)
def test_another_users_account_filter_is_not_found(alice_api, accounts, path):
    mine, theirs = accounts
    assert alice_api.get(path, {"account_id": mine.pk}).status_code == 200
    for account_id in (theirs.pk, theirs.pk + 1000):
        response = alice_api.get(path, {"account_id": account_id})
        assert response.status_code == 404, response.content
        error = response.json()["error"]
        assert error["code"] == "not_found" and error["request_id"] == response["X-Request-ID"]


@pytest.mark.parametrize("path", ["/api/v1/oms/orders/open", "/api/v1/oms/deals"])
def test_the_csv_export_of_another_users_account_is_not_found(alice_api, accounts, path):
    _, theirs = accounts
    response = alice_api.get(path, {"account_id": theirs.pk, "format": "csv"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_the_account_lists_refuse_another_users_account_filter(alice_api, accounts):
    mine, theirs = accounts
    for suffix in ("orders", "positions"):
        assert alice_api.get(f"/api/v1/accounts/{mine.pk}/{suffix}").status_code == 200
        response = alice_api.get(f"/api/v1/accounts/{mine.pk}/{suffix}", {"account_id": theirs.pk})
        assert response.status_code == 404, (suffix, response.content)
