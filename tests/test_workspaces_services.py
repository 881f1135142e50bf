"""Workspace services where the API alone does not reach: concurrent first
visits (PostgreSQL row locks) and the admin, which only looks and deletes
through the services."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client

from marketdata.services import instrument_upsert
from tests.test_oms_concurrency import run_threads
from workspaces.models import Watchlist, Workspace
from workspaces.services import watchlist_create, watchlist_item_add, workspace_create, workspace_get_default


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_tabs_opening_at_once_get_one_default_workspace_and_one_watchlist(alice):
    instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    results = run_threads(4, lambda i: workspace_get_default(user=alice).pk)
    assert all(outcome == "ok" for outcome, _ in results), results
    assert len({pk for _, pk in results}) == 1
    assert Workspace.objects.filter(owner=alice).count() == 1
    assert Watchlist.objects.filter(owner=alice).count() == 1


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_concurrent_adds_keep_the_limit_and_distinct_positions(alice, settings):
    settings.WATCHLIST_MAX_ITEMS = 3
    symbols = [f"S{n}" for n in range(6)]
    for symbol in symbols:
        instrument_upsert(symbol=symbol, type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    watchlist = watchlist_create(owner=alice, name="W")
    results = run_threads(6, lambda i: watchlist_item_add(watchlist=watchlist, symbol=symbols[i]))
    assert sum(r == ("ok", True) for r in results) == 3, results  # the others: limit_reached
    positions = list(watchlist.items.values_list("position", flat=True))
    assert len(positions) == 3 and len(set(positions)) == 3


# --- the admin ---------------------------------------------------------------------------------


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.mark.django_db
def test_staff_see_workspaces_and_watchlists_and_cannot_add_or_edit_them(staff_client, alice):
    instrument_upsert(symbol="BINANCE:BTC/USDT", type="crypto", tick_size=Decimal("0.01"), lot_size=Decimal("0.001"))
    workspace = workspace_get_default(user=alice)
    watchlist_id = workspace.layout["watchlist_id"]
    for url in (
        "/admin/workspaces/workspace/",
        f"/admin/workspaces/workspace/{workspace.pk}/change/",
        "/admin/workspaces/watchlist/",
        f"/admin/workspaces/watchlist/{watchlist_id}/change/",
        "/admin/workspaces/usersettings/",
    ):
        response = staff_client.get(url)
        assert response.status_code == 200, url
    assert "BINANCE:BTC/USDT" in staff_client.get("/admin/workspaces/watchlist/").content.decode()
    assert staff_client.get("/admin/workspaces/workspace/add/").status_code == 403
    staff_client.post(f"/admin/workspaces/workspace/{workspace.pk}/change/", {"name": "renamed"})
    assert Workspace.objects.get(pk=workspace.pk).name == workspace.name


@pytest.mark.django_db
def test_deleting_the_default_in_the_admin_makes_another_the_default(staff_client, alice):
    first = workspace_create(owner=alice, name="first", is_default=True)
    second = workspace_create(owner=alice, name="second")
    response = staff_client.post(f"/admin/workspaces/workspace/{first.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert list(Workspace.objects.filter(owner=alice).values_list("pk", "is_default")) == [(second.pk, True)]
