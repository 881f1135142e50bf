"""The dashboard page on the server: the shell, the user's own accounts with
what their brokers accept, a fixed number of queries however many accounts,
and the front-end packages found by the static files finders."""

from __future__ import annotations

import json

import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.test.utils import CaptureQueriesContext

from brokers.services import broker_account_create

pytestmark = pytest.mark.django_db


def config_of(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="dashboard-config" type="application/json">') + len(
        '<script id="dashboard-config" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_the_dashboard_lists_only_the_users_accounts_with_their_brokers_order_types(client, alice, bob):
    mine = broker_account_create(owner=alice, label="alice paper", position_mode="hedging")
    broker_account_create(owner=bob, label="bob paper")
    client.force_login(alice)
    response = client.get("/")
    assert response.status_code == 200
    config = config_of(response)
    assert [a["id"] for a in config["accounts"]] == [mine.pk]
    account = config["accounts"][0]
    assert set(account["order_types"]) == {"market", "limit", "stop", "stop_limit"}
    assert "gtc" in account["times_in_force"] and account["position_mode"] == "hedging"
    assert b"bob paper" not in response.content
    html = response.content.decode()
    assert 'id="watchlist-rows"' in html and 'id="ticket"' in html and 'id="working-rows"' in html
    assert "https://" not in html.replace("https://www.w3.org", "")  # nothing from a CDN


def test_every_ticket_input_has_a_label(client, alice):
    client.force_login(alice)
    html = client.get("/").content.decode()
    import re

    for input_id in re.findall(r'<(?:input|select)[^>]*\bid="([^"]+)"', html):
        assert f'for="{input_id}"' in html, input_id


def test_the_page_costs_the_same_queries_for_one_account_or_ten(client, alice):
    """Session, user, settings, default workspace, its watchlist with its items, their instruments, accounts."""
    broker_account_create(owner=alice, label="first")
    client.force_login(alice)
    client.get("/")  # warm caches (session, content types)
    with CaptureQueriesContext(connection) as one:
        assert client.get("/").status_code == 200
    for n in range(9):
        broker_account_create(owner=alice, label=f"more {n}")
    with CaptureQueriesContext(connection) as ten:
        assert client.get("/").status_code == 200
    assert len(ten.captured_queries) == len(one.captured_queries) <= 7, [q["sql"] for q in ten.captured_queries]


def test_the_front_end_packages_are_static_files():
    assert finders.find("vendor/lightweight-charts/lightweight-charts.standalone.production.mjs")
    assert finders.find("vendor/htmx/htmx.min.js")
    assert finders.find("terminal/js/dashboard.js") and finders.find("terminal/terminal.css")


def test_the_blotter_headers_name_the_columns_a_layout_may_choose(client, alice):
    # The column pickers read the headers' data-col; the API accepts BLOTTER_COLUMNS: the same names, in order.
    import re

    from workspaces.layout import BLOTTER_COLUMNS

    client.force_login(alice)
    html = client.get("/").content.decode()
    for table, columns in BLOTTER_COLUMNS.items():
        pane = html[html.index(f'id="pane-{table}"') :]
        head = pane[: pane.index("</thead>")]
        assert tuple(re.findall(r'data-col="([a-z_]+)"', head)) == columns, table
