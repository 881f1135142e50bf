"""Workspaces, watchlists and the user's settings over REST (issue 12): the
caller's own only, bad input refused in the error shape and changing nothing,
per-user limits, and list reads in a fixed number of queries."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from brokers.services import broker_account_create
from marketdata.services import instrument_upsert
from workspaces.models import Watchlist, WatchlistItem, Workspace

pytestmark = pytest.mark.django_db

SYMBOLS = ["AAPL", "MSFT", "BINANCE:BTC/USDT", "NSE:INFY"]


@pytest.fixture
def instruments(db):
    for n, symbol in enumerate(SYMBOLS):
        instrument_upsert(symbol=symbol, type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1), sim_params={"start": 100 + n})
    instrument_upsert(symbol="OLD", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1), active=False)


def error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


# --- the default workspace -------------------------------------------------------------------------


def test_default_workspace_is_created_once_with_a_watchlist_of_quoted_instruments(alice_api, alice, instruments):
    account = broker_account_create(owner=alice, kind="paper", label="paper")
    first = alice_api.get("/api/v1/workspaces/default")
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["is_default"] is True
    layout = body["layout"]
    assert set(layout) == {"panels", "account_id", "symbol", "resolution", "watchlist_id", "columns"}
    assert layout["account_id"] == account.pk
    assert layout["resolution"] == "1"
    assert all(set(panel) == {"id", "kind", "size"} for panel in layout["panels"]) and layout["panels"]
    watchlist = alice_api.get(f"/api/v1/watchlists/{layout['watchlist_id']}").json()
    assert watchlist["name"] == "Watchlist"
    assert watchlist["symbols"] == sorted(SYMBOLS)  # the active ones, never OLD
    assert layout["symbol"] == watchlist["symbols"][0]
    again = alice_api.get("/api/v1/workspaces/default/")
    assert again.json()["id"] == body["id"]
    assert Workspace.objects.filter(owner=alice).count() == 1 and Watchlist.objects.filter(owner=alice).count() == 1


def test_moving_the_default_keeps_one_and_deleting_it_promotes_another(alice_api, alice):
    a = alice_api.post("/api/v1/workspaces", {"name": "A", "is_default": True}, format="json").json()
    b = alice_api.post("/api/v1/workspaces", {"name": "B", "is_default": True}, format="json").json()
    assert alice_api.get(f"/api/v1/workspaces/{a['id']}").json()["is_default"] is False
    refused = alice_api.patch(f"/api/v1/workspaces/{b['id']}", {"is_default": False}, format="json")
    assert refused.status_code == 422 and "is_default" in error(refused)["fields"]
    moved = alice_api.patch(f"/api/v1/workspaces/{a['id']}", {"is_default": True}, format="json")
    assert moved.json()["is_default"] is True
    assert list(Workspace.objects.filter(owner=alice, is_default=True).values_list("id", flat=True)) == [a["id"]]
    assert alice_api.delete(f"/api/v1/workspaces/{a['id']}").status_code == 204
    assert alice_api.get("/api/v1/workspaces/default").json()["id"] == b["id"]


# --- workspace CRUD and layouts --------------------------------------------------------------------


def test_layout_round_trips_and_patch_merges_its_keys(alice_api, alice, instruments):
    account = broker_account_create(owner=alice, kind="paper", label="paper")
    watchlist = alice_api.post("/api/v1/watchlists", {"name": "w", "symbols": ["MSFT"]}, format="json").json()
    layout = {
        "panels": [{"id": "chart", "kind": "chart", "size": 60}, {"id": "ticket", "kind": "ticket", "size": 40}],
        "account_id": account.pk,
        "symbol": "BINANCE:BTC/USDT",
        "resolution": "D",
        "watchlist_id": watchlist["id"],
        "columns": {"working": ["symbol", "side", "qty", "price", "status"], "fills": ["time", "symbol", "price"]},
    }
    created = alice_api.post("/api/v1/workspaces", {"name": "Crypto", "layout": layout}, format="json")
    assert created.status_code == 201, created.content
    stored = created.json()["layout"]
    assert stored == layout | {"resolution": "1D", "panels": [p | {"size": float(p["size"])} for p in layout["panels"]]}
    pk = created.json()["id"]
    patched = alice_api.patch(f"/api/v1/workspaces/{pk}", {"layout": {"symbol": "AAPL"}}, format="json").json()
    assert patched["layout"]["symbol"] == "AAPL" and patched["layout"]["account_id"] == account.pk
    replaced = alice_api.put(f"/api/v1/workspaces/{pk}", {"name": "Bare", "layout": {"symbol": "MSFT"}}, format="json").json()
    assert replaced["name"] == "Bare"
    assert replaced["layout"] == {
        "panels": [],
        "account_id": None,
        "symbol": "MSFT",
        "resolution": None,
        "watchlist_id": None,
        "columns": None,
    }
    listed = alice_api.get("/api/v1/workspaces").json()
    assert [w["id"] for w in listed["results"]] == [pk] and listed["next"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "n", "layout": {"panels": [{"id": "a", "kind": "chart"}]}}, "layout.panels[0].size"),
        ({"name": "n", "layout": {"panels": [{"id": "a", "kind": "chart", "size": -1}]}}, "layout.panels[0].size"),
        ({"name": "n", "layout": {"panels": [{"id": "A B", "kind": "chart", "size": 1}]}}, "layout.panels[0].id"),
        ({"name": "n", "layout": {"panels": [{"id": "a", "kind": "x", "size": 1, "color": "red"}]}}, "layout.panels[0].color"),
        ({"name": "n", "layout": {"panels": [{"id": "a", "kind": "x", "size": 1}] * 2}}, "layout.panels"),
        ({"name": "n", "layout": {"panels": [{"id": f"p{n}", "kind": "x", "size": 1} for n in range(25)]}}, "layout.panels"),
        ({"name": "n", "layout": {"resolution": "7"}}, "layout.resolution"),
        ({"name": "n", "layout": {"symbol": "NOPE"}}, "layout.symbol"),
        ({"name": "n", "layout": {"symbol": "A\x00"}}, "layout.symbol"),
        ({"name": "n", "layout": {"account_id": 987654321}}, "layout.account_id"),
        ({"name": "n", "layout": {"watchlist_id": 987654321}}, "layout.watchlist_id"),
        ({"name": "n", "layout": {"theme": "dark"}}, "layout.theme"),
        ({"name": "n", "layout": {"columns": {"orders": ["symbol"]}}}, "layout.columns"),
        ({"name": "n", "layout": {"columns": {"working": ["symbol", "colour"]}}}, "layout.columns"),
        ({"name": "n", "layout": {"columns": {"working": ["symbol", "symbol"]}}}, "layout.columns"),
        ({"name": "n", "layout": {"columns": {"working": []}}}, "layout.columns"),
        ({"name": "n", "layout": {"columns": ["symbol"]}}, "layout.columns"),
        ({"name": "n", "layout": []}, "layout.non_field_errors"),
        ({"name": "n", "owner": 1}, "owner"),
    ],
)
def test_bad_workspaces_are_refused_and_change_nothing(alice_api, alice, instruments, body, field):
    response = alice_api.post("/api/v1/workspaces", body, format="json")
    assert response.status_code == 422, response.content
    assert error(response)["code"] == "validation_error"
    assert any(name.startswith(field) for name in error(response)["fields"]), error(response)
    assert not Workspace.objects.filter(owner=alice).exists()


def test_a_layout_cannot_name_another_users_account_or_watchlist(alice_api, bob, instruments):
    theirs_account = broker_account_create(owner=bob, kind="paper", label="bob")
    theirs_watchlist = Watchlist.objects.create(owner=bob, name="bob's")
    for layout, field in (
        ({"account_id": theirs_account.pk}, "layout.account_id"),
        ({"watchlist_id": theirs_watchlist.pk}, "layout.watchlist_id"),
    ):
        response = alice_api.post("/api/v1/workspaces", {"name": "n", "layout": layout}, format="json")
        assert response.status_code == 422 and field in error(response)["fields"]
        assert error(response)["fields"][field] == [f"No such {field.split('.')[1].removesuffix('_id')}."]


def test_workspaces_are_bounded_per_user(alice_api, alice, settings):
    settings.WORKSPACES_MAX_PER_USER = 2
    for name in ("a", "b"):
        assert alice_api.post("/api/v1/workspaces", {"name": name}, format="json").status_code == 201
    third = alice_api.post("/api/v1/workspaces", {"name": "c"}, format="json")
    assert third.status_code == 422 and error(third)["code"] == "limit_reached"
    assert Workspace.objects.filter(owner=alice).count() == 2


# --- watchlists --------------------------------------------------------------------------------------


def test_watchlist_items_add_remove_reorder_with_symbols_holding_slash_and_colon(alice_api, instruments):
    created = alice_api.post("/api/v1/watchlists", {"name": "Core"}, format="json")
    assert created.status_code == 201
    pk = created.json()["id"]
    assert created.json()["symbols"] == [] and created.json()["columns"] == ["last", "change", "change_percent", "bid", "ask"]
    for symbol in ("AAPL", "BINANCE:BTC/USDT", "NSE:INFY"):
        added = alice_api.post(f"/api/v1/watchlists/{pk}/items", {"symbol": symbol}, format="json")
        assert added.status_code == 201, added.content
    assert added.json()["symbols"] == ["AAPL", "BINANCE:BTC/USDT", "NSE:INFY"]
    again = alice_api.post(f"/api/v1/watchlists/{pk}/items", {"symbol": "AAPL"}, format="json")
    assert again.status_code == 200 and again.json()["symbols"] == added.json()["symbols"]  # idempotent
    reordered = alice_api.put(f"/api/v1/watchlists/{pk}/items", {"symbols": ["NSE:INFY", "AAPL", "BINANCE:BTC/USDT"]}, format="json")
    assert reordered.status_code == 200 and reordered.json()["symbols"] == ["NSE:INFY", "AAPL", "BINANCE:BTC/USDT"]
    removed = alice_api.delete(f"/api/v1/watchlists/{pk}/items/BINANCE:BTC/USDT")
    assert removed.status_code == 200, removed.content
    assert removed.json()["symbols"] == ["NSE:INFY", "AAPL"]
    added = alice_api.post(f"/api/v1/watchlists/{pk}/items", {"symbol": "MSFT"}, format="json")
    assert added.json()["symbols"] == ["NSE:INFY", "AAPL", "MSFT"]  # appended after the reorder
    missing = alice_api.delete(f"/api/v1/watchlists/{pk}/items/BINANCE:BTC/USDT")
    assert missing.status_code == 404 and error(missing)["code"] == "not_in_watchlist"
    assert alice_api.delete(f"/api/v1/watchlists/{pk}/items/MSFT/").status_code == 200  # one trailing slash


def test_bad_watchlist_input_is_refused_and_changes_nothing(alice_api, instruments):
    pk = alice_api.post("/api/v1/watchlists", {"name": "W", "symbols": ["AAPL", "MSFT"]}, format="json").json()["id"]
    before = list(WatchlistItem.objects.filter(watchlist_id=pk).values_list("instrument__symbol", "position"))
    cases = [
        ("post", f"/api/v1/watchlists/{pk}/items", {"symbol": "NOPE"}, "symbol"),
        ("post", f"/api/v1/watchlists/{pk}/items", {"symbol": "OLD"}, "symbol"),
        ("post", f"/api/v1/watchlists/{pk}/items", {"symbol": ""}, "symbol"),
        ("post", f"/api/v1/watchlists/{pk}/items", {"symbol": ["AAPL"]}, "symbol"),
        ("put", f"/api/v1/watchlists/{pk}/items", {"symbols": ["AAPL"]}, "symbols"),
        ("put", f"/api/v1/watchlists/{pk}/items", {"symbols": ["AAPL", "MSFT", "NSE:INFY"]}, "symbols"),
        ("put", f"/api/v1/watchlists/{pk}/items", {"symbols": ["AAPL", "AAPL", "MSFT"]}, "symbols"),
        ("patch", f"/api/v1/watchlists/{pk}", {"columns": ["last", "colour"]}, "columns[1]"),
        ("patch", f"/api/v1/watchlists/{pk}", {"columns": ["last", "last"]}, "columns"),
        ("patch", f"/api/v1/watchlists/{pk}", {"symbols": ["AAPL", "NOPE"]}, "symbols"),
        ("patch", f"/api/v1/watchlists/{pk}", {"name": " "}, "name"),
        ("post", "/api/v1/watchlists", {"name": "x", "symbols": ["AAPL", "AAPL"]}, "symbols"),
    ]
    for method, url, body, field in cases:
        response = getattr(alice_api, method)(url, body, format="json")
        assert response.status_code == 422, (url, body, response.content)
        assert field in error(response)["fields"], (body, error(response))
    assert list(WatchlistItem.objects.filter(watchlist_id=pk).values_list("instrument__symbol", "position")) == before
    assert Watchlist.objects.count() == 1


def test_watchlists_and_their_items_are_bounded(alice_api, alice, instruments, settings):
    settings.WATCHLIST_MAX_ITEMS = 2
    settings.WATCHLISTS_MAX_PER_USER = 1
    pk = alice_api.post("/api/v1/watchlists", {"name": "W", "symbols": ["AAPL", "MSFT"]}, format="json").json()["id"]
    full = alice_api.post(f"/api/v1/watchlists/{pk}/items", {"symbol": "NSE:INFY"}, format="json")
    assert full.status_code == 422 and error(full)["code"] == "limit_reached"
    too_many = alice_api.post("/api/v1/watchlists", {"name": "W2"}, format="json")
    assert too_many.status_code == 422 and error(too_many)["code"] == "limit_reached"
    assert alice_api.post("/api/v1/watchlists", {"name": "W3", "symbols": SYMBOLS[:3]}, format="json").status_code == 422
    assert WatchlistItem.objects.filter(watchlist__owner=alice).count() == 2


def test_deleting_a_watchlist_clears_it_from_layouts(alice_api, instruments):
    pk = alice_api.post("/api/v1/watchlists", {"name": "W"}, format="json").json()["id"]
    ws = alice_api.post("/api/v1/workspaces", {"name": "n", "layout": {"watchlist_id": pk, "symbol": "AAPL"}}, format="json").json()
    assert alice_api.delete(f"/api/v1/watchlists/{pk}").status_code == 204
    layout = alice_api.get(f"/api/v1/workspaces/{ws['id']}").json()["layout"]
    assert layout["watchlist_id"] is None and layout["symbol"] == "AAPL"


# --- isolation ---------------------------------------------------------------------------------------


def test_bob_never_sees_or_changes_alices_workspaces_and_watchlists(alice_api, bob_api, alice, instruments):
    ws = alice_api.get("/api/v1/workspaces/default").json()
    wl = ws["layout"]["watchlist_id"]
    assert bob_api.get("/api/v1/workspaces").json()["results"] == []
    assert bob_api.get("/api/v1/watchlists").json()["results"] == []
    for method, url, body in [
        ("get", f"/api/v1/workspaces/{ws['id']}", None),
        ("patch", f"/api/v1/workspaces/{ws['id']}", {"name": "mine"}),
        ("put", f"/api/v1/workspaces/{ws['id']}", {"name": "mine", "layout": {}}),
        ("delete", f"/api/v1/workspaces/{ws['id']}", None),
        ("get", f"/api/v1/watchlists/{wl}", None),
        ("patch", f"/api/v1/watchlists/{wl}", {"name": "mine"}),
        ("delete", f"/api/v1/watchlists/{wl}", None),
        ("post", f"/api/v1/watchlists/{wl}/items", {"symbol": "AAPL"}),
        ("put", f"/api/v1/watchlists/{wl}/items", {"symbols": []}),
        ("delete", f"/api/v1/watchlists/{wl}/items/AAPL", None),
    ]:
        response = getattr(bob_api, method)(url, body, format="json") if body is not None else getattr(bob_api, method)(url)
        assert response.status_code == 404, (method, url, response.content)
    bobs_default = bob_api.get("/api/v1/workspaces/default").json()
    assert bobs_default["id"] != ws["id"] and bobs_default["layout"]["watchlist_id"] != wl
    assert alice_api.get(f"/api/v1/workspaces/{ws['id']}").json() == ws
    assert alice_api.get(f"/api/v1/watchlists/{wl}").json()["symbols"] == sorted(SYMBOLS)


def test_a_read_key_reads_but_never_writes(alice_read_key, alice, instruments):
    from rest_framework.test import APIClient

    reader = APIClient()
    reader.credentials(HTTP_X_API_KEY=alice_read_key)
    assert reader.get("/api/v1/workspaces").status_code == 200
    refused = reader.post("/api/v1/watchlists", {"name": "W"}, format="json")
    assert refused.status_code == 403 and error(refused)["code"] == "permission_denied"
    assert not Watchlist.objects.exists()


# --- lists in a fixed number of queries ----------------------------------------------------------


def test_lists_take_the_same_queries_for_one_row_or_many(alice_api, alice, instruments):
    def list_queries(url: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert alice_api.get(url).status_code == 200
        return len(queries)

    alice_api.post("/api/v1/watchlists", {"name": "W0", "symbols": ["AAPL"]}, format="json")
    alice_api.post("/api/v1/workspaces", {"name": "S0"}, format="json")
    one = list_queries("/api/v1/watchlists"), list_queries("/api/v1/workspaces")
    for n in range(1, 6):
        alice_api.post("/api/v1/watchlists", {"name": f"W{n}", "symbols": SYMBOLS}, format="json")
        alice_api.post("/api/v1/workspaces", {"name": f"S{n}"}, format="json")
    many = list_queries("/api/v1/watchlists"), list_queries("/api/v1/workspaces")
    assert many == one
    assert one[0] <= 6  # key look-up (and its last-use touch), the page, the items


# --- the user's settings -------------------------------------------------------------------------


def test_timezone_setting_defaults_to_utc_and_refuses_unknown_zones(alice_api, bob_api):
    assert alice_api.get("/api/v1/me/settings").json() == {"timezone": "UTC"}
    changed = alice_api.patch("/api/v1/me/settings", {"timezone": "Asia/Seoul"}, format="json")
    assert changed.status_code == 200 and changed.json() == {"timezone": "Asia/Seoul"}
    for bad in ("Mars/Olympus", "../etc/passwd", "", 5):
        refused = alice_api.patch("/api/v1/me/settings", {"timezone": bad}, format="json")
        assert refused.status_code == 422 and "timezone" in error(refused)["fields"], bad
    assert alice_api.get("/api/v1/me/settings/").json() == {"timezone": "Asia/Seoul"}
    assert bob_api.get("/api/v1/me/settings").json() == {"timezone": "UTC"}
