"""Market-data admin: instruments (writes through services) and the read-only bar browser."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from marketdata.models import Bar, Instrument
from marketdata.services import bars_upsert, instrument_upsert
from marketdata.types import Bar as BarData

pytestmark = pytest.mark.django_db

T0 = int(datetime(2026, 3, 2, 14, 30, tzinfo=UTC).timestamp())


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def instruments() -> dict[str, Instrument]:
    index = instrument_upsert(symbol="DEMO:IDX", description="Demo index", exchange="DEMO", type="index")
    return {
        "aapl": instrument_upsert(symbol="AAPL", description="Apple Inc.", exchange="NASDAQ", type="stock"),
        "infy": instrument_upsert(symbol="NSE:INFY", description="Infosys", exchange="NSE", type="stock", currency="INR", active=False),
        "btc": instrument_upsert(symbol="BTC/USDT", description="Bitcoin", exchange="SIMEX", type="crypto", lot_size=Decimal("0.0001")),
        "index": index,
        "call": instrument_upsert(
            symbol="DEMO:IDX-2604-C5000",
            exchange="DEMO",
            type="option",
            underlying=index,
            strike=Decimal(5000),
            option_type="call",
            expiry=datetime(2026, 4, 30, tzinfo=UTC).date(),
            multiplier=Decimal(50),
        ),
    }


@pytest.fixture
def bars(instruments) -> list[Bar]:
    rows = [
        BarData(time=T0 + 60 * i, open=Decimal(100 + i), high=Decimal(102 + i), low=Decimal(99 + i), close=Decimal(101 + i))
        for i in range(3)
    ]
    bars_upsert(instrument=instruments["aapl"], resolution="1", bars=rows)
    bars_upsert(instrument=instruments["btc"], resolution="1D", bars=[BarData(time=T0 - T0 % 86_400, open=1, high=2, low=1, close=2)])
    return list(Bar.objects.order_by("pk"))


def changelist(client: Client, model: str, **params: str):
    return client.get(reverse(f"admin:marketdata_{model}_changelist"), params)


# --- instruments ---------------------------------------------------------------------------


def test_instrument_changelist_shows_the_columns(staff_client, instruments):
    response = changelist(staff_client, "instrument")
    assert response.status_code == 200
    page = response.content.decode()
    for symbol in ("AAPL", "NSE:INFY", "BTC/USDT", "DEMO:IDX-2604-C5000"):
        assert symbol in page
    for column in ("column-tick_size", "column-lot_size", "column-multiplier", "column-expiry", "column-strike", "column-option_type"):
        assert column in page


def test_instrument_search_and_filters(staff_client, instruments):
    found = changelist(staff_client, "instrument", q="apple").context["cl"].result_list
    assert [i.symbol for i in found] == ["AAPL"]
    found = changelist(staff_client, "instrument", q="simex").context["cl"].result_list
    assert [i.symbol for i in found] == ["BTC/USDT"]
    found = changelist(staff_client, "instrument", type__exact="option").context["cl"].result_list
    assert [i.symbol for i in found] == ["DEMO:IDX-2604-C5000"]
    found = changelist(staff_client, "instrument", active__exact="0").context["cl"].result_list
    assert [i.symbol for i in found] == ["NSE:INFY"]
    found = changelist(staff_client, "instrument", exchange="NSE").context["cl"].result_list
    assert [i.symbol for i in found] == ["NSE:INFY"]


def test_activate_and_deactivate_actions_change_the_rows(staff_client, instruments):
    url = reverse("admin:marketdata_instrument_changelist")
    chosen = [instruments["aapl"].pk, instruments["btc"].pk]
    response = staff_client.post(url, {"action": "deactivate", "_selected_action": chosen}, follow=True)
    assert response.status_code == 200
    assert "2 instrument(s) deactivated." in response.content.decode()
    assert set(Instrument.objects.filter(active=False).values_list("symbol", flat=True)) == {"AAPL", "BTC/USDT", "NSE:INFY"}

    response = staff_client.post(url, {"action": "activate", "_selected_action": [*chosen, instruments["infy"].pk]}, follow=True)
    assert "3 instrument(s) activated." in response.content.decode()
    assert not Instrument.objects.filter(active=False).exists()


def test_instruments_cannot_be_deleted_from_the_admin(staff_client, instruments):
    response = changelist(staff_client, "instrument")
    assert "delete_selected" not in response.content.decode()
    url = reverse("admin:marketdata_instrument_delete", args=[instruments["aapl"].pk])
    assert staff_client.post(url, {"post": "yes"}).status_code == 403
    assert Instrument.objects.filter(symbol="AAPL").exists()


def test_instrument_add_and_change_go_through_the_service(staff_client, instruments, monkeypatch):
    import marketdata.admin

    calls: list[dict] = []
    real = marketdata.admin.instrument_upsert
    monkeypatch.setattr(marketdata.admin, "instrument_upsert", lambda **kw: calls.append(kw) or real(**kw))
    form = {
        "symbol": "MSFT",
        "description": "Microsoft",
        "type": "stock",
        "exchange": "NASDAQ",
        "currency": "USD",
        "active": "on",
        "tick_size": "0.01",
        "lot_size": "1",
        "multiplier": "1",
        "session": "0930-1600:23456",
        "timezone": "America/New_York",
        "underlying": "",
        "expiry": "",
        "strike": "",
        "option_type": "",
        "broker_codes": "{}",
        "sim_params": "{}",
    }
    response = staff_client.post(reverse("admin:marketdata_instrument_add"), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    msft = Instrument.objects.get(symbol="MSFT")
    assert (msft.session, msft.timezone) == ("0930-1600:23456", "America/New_York")
    assert calls[-1]["symbol"] == "MSFT"

    change = reverse("admin:marketdata_instrument_change", args=[msft.pk])
    page = staff_client.get(change).content.decode()
    assert 'name="symbol"' not in page  # fixed once created
    response = staff_client.post(change, {**form, "symbol": "RENAMED", "description": "Microsoft Corp."})
    assert response.status_code == 302
    msft.refresh_from_db()
    assert (msft.symbol, msft.description) == ("MSFT", "Microsoft Corp.")
    assert calls[-1]["symbol"] == "MSFT" and calls[-1]["description"] == "Microsoft Corp."
    assert "session" not in calls[-1]  # only the changed fields are written


def test_underlying_is_chosen_by_autocomplete(staff_client, instruments):
    page = staff_client.get(reverse("admin:marketdata_instrument_change", args=[instruments["call"].pk])).content.decode()
    assert "admin-autocomplete" in page
    response = staff_client.get(
        reverse("admin:autocomplete"), {"term": "DEMO", "app_label": "marketdata", "model_name": "instrument", "field_name": "underlying"}
    )
    assert response.status_code == 200
    assert "DEMO:IDX" in {r["text"] for r in response.json()["results"]}


def test_traders_are_kept_out(alice, instruments):
    client = Client()
    client.force_login(alice)
    assert changelist(client, "instrument").status_code == 302
    assert changelist(client, "bar").status_code == 302


# --- the bar browser -------------------------------------------------------------------------


def test_bar_browser_lists_filters_and_searches(staff_client, bars, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        response = changelist(staff_client, "bar")
    assert response.status_code == 200
    cl = response.context["cl"]
    assert len(cl.result_list) == 4
    assert cl.show_full_result_count is False
    page = response.content.decode()
    assert "AAPL" in page and "BTC/USDT" in page and "column-volume" in page

    assert [b.resolution for b in changelist(staff_client, "bar", resolution__exact="1D").context["cl"].result_list] == ["1D"]
    assert {b.instrument.symbol for b in changelist(staff_client, "bar", q="btc").context["cl"].result_list} == {"BTC/USDT"}
    by_day = changelist(staff_client, "bar", time__year="2026", time__month="3", time__day="2").context["cl"].result_list
    assert len(by_day) == 4
    assert not changelist(staff_client, "bar", time__year="2025").context["cl"].result_list


def test_bar_browser_refuses_add_change_and_delete(staff_client, bars):
    bar = bars[0]
    before = (bar.open, bar.high, bar.low, bar.close, bar.volume)
    page = changelist(staff_client, "bar").content.decode()
    assert reverse("admin:marketdata_bar_add") not in page
    assert "delete_selected" not in page

    assert staff_client.get(reverse("admin:marketdata_bar_add")).status_code == 403
    change = reverse("admin:marketdata_bar_change", args=[bar.pk])
    view = staff_client.get(change)
    assert view.status_code == 200  # view only
    assert 'name="_save"' not in view.content.decode()
    post = {"instrument": bar.instrument_id, "resolution": "5", "time_0": "2020-01-01", "time_1": "00:00:00"}
    post |= {"open": "1", "high": "1", "low": "1", "close": "1", "volume": "0"}
    assert staff_client.post(change, post).status_code == 403
    assert staff_client.post(reverse("admin:marketdata_bar_delete", args=[bar.pk]), {"post": "yes"}).status_code == 403
    bar.refresh_from_db()
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == before
    assert bar.resolution == "1"
    assert Bar.objects.count() == 4
