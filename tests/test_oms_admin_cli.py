"""Staff tools of the OMS: the read-only admin with its service-backed actions,
and the management commands (thin wrappers over the same commands)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from brokers.models import BrokerAccount
from brokers.services import broker_account_create
from marketdata.quotes import quote_store
from marketdata.services import instrument_upsert
from marketdata.types import Quote
from oms.models import Deal, Order, OrderEvent, Position
from oms.services.send import order_send
from tests.fakes import FakeVenue
from tests.oms_support import order_spec, venue_registered

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def eager_celery() -> Iterator[None]:
    from config.celery import app

    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture
def venue() -> Iterator[FakeVenue]:
    with venue_registered(FakeVenue()) as registered:
        yield registered


@pytest.fixture(autouse=True)
def instruments(db) -> None:
    instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    instrument_upsert(symbol="BTC/USDT", type="crypto", tick_size=Decimal("0.01"), lot_size=Decimal("0.001"))
    quote_store(Quote(symbol="AAPL", time=time.time(), last=Decimal(100), bid=Decimal("99.99"), ask=Decimal("100.01")))


@pytest.fixture
def account(alice, venue) -> BrokerAccount:
    return broker_account_create(
        owner=alice, kind="kis", base_currency="USD", label="main", credentials={"app_key": "AK", "app_secret": "SECRET"}
    )


@pytest.fixture
def hedging(alice, venue) -> BrokerAccount:
    return broker_account_create(
        owner=alice,
        kind="kis",
        base_currency="USD",
        label="hedge",
        position_mode="hedging",
        credentials={"app_key": "AK", "app_secret": "SECRET"},
    )


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """Run the on-commit callbacks (the eager broker calls) of a block as it ends."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def working_order(account: BrokerAccount, run_on_commit: Any, **payload: Any) -> Order:
    fields = {"symbol": "AAPL", "side": "buy", "order_type": "limit", "qty": "5", "price": "90.00", **payload}
    with run_on_commit():
        order = order_send(account=account, actor=None, source="rest", spec=order_spec(**fields))
    order.refresh_from_db()
    return order


def cli(name: str, *args: Any, run_on_commit: Any) -> dict[str, Any]:
    out = StringIO()
    with run_on_commit():
        call_command(name, *[str(a) for a in args], stdout=out)
    return json.loads(out.getvalue())


# --- admin ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["order", "deal", "position", "idempotencykey"])
def test_financial_rows_are_read_only_in_the_admin(staff_client, account, run_on_commit, venue, model):
    venue.mode = "fill"
    order = working_order(account, run_on_commit, order_type="market", price=None)
    row = {"order": order, "deal": Deal.objects.get(), "position": Position.objects.get()}.get(model)
    assert staff_client.get(f"/admin/oms/{model}/").status_code == 200
    assert staff_client.get(f"/admin/oms/{model}/add/").status_code == 403
    if row is not None:
        page = staff_client.get(f"/admin/oms/{model}/{row.pk}/change/")
        assert page.status_code == 200 and b"Save" not in page.content  # a view page
        assert staff_client.post(f"/admin/oms/{model}/{row.pk}/change/", {}).status_code == 403
        assert staff_client.get(f"/admin/oms/{model}/{row.pk}/delete/").status_code == 403
        bulk_delete = {"action": "delete_selected", "_selected_action": [row.pk]}
        assert staff_client.post(f"/admin/oms/{model}/", bulk_delete).status_code in (200, 302)
        assert type(row).objects.filter(pk=row.pk).exists()


def test_order_page_shows_events_and_deals_inline(staff_client, account, run_on_commit, venue):
    venue.mode = "fill"
    order = working_order(account, run_on_commit, order_type="market", price=None)
    page = staff_client.get(f"/admin/oms/order/{order.pk}/change/").content.decode()
    assert "pending_new" in page and "filled" in page
    assert order.deals.get().broker_trade_id in page


def test_order_list_filters(staff_client, account, run_on_commit):
    working_order(account, run_on_commit)
    page = staff_client.get("/admin/oms/order/", {"status__exact": "new"})
    assert page.status_code == 200 and b"AAPL" in page.content
    assert b"AAPL" not in staff_client.get("/admin/oms/order/", {"status__exact": "filled"}).content


def test_cancel_action_cancels_through_the_service_as_admin(staff_client, staff, account, run_on_commit, venue):
    working = working_order(account, run_on_commit)
    venue.mode = "fill"
    filled = working_order(account, run_on_commit, order_type="market", price=None)
    with run_on_commit():
        response = staff_client.post(
            "/admin/oms/order/", {"action": "cancel_selected_orders", "_selected_action": [working.pk, filled.pk]}, follow=True
        )
    assert response.status_code == 200
    text = response.content.decode()
    assert "Cancel requested for 1 order(s)." in text and f"#{filled.pk}" in text
    working.refresh_from_db()
    assert working.status == "canceled"
    event = OrderEvent.objects.get(order=working, to_status="pending_cancel")
    assert (event.source, event.actor_id) == ("admin", staff.pk)
    assert Order.objects.get(pk=filled.pk).status == "filled"


def test_reconcile_action_on_broker_accounts_queues_the_task(staff_client, account, monkeypatch):
    import oms.tasks

    queued: list[int] = []

    class Task:
        @staticmethod
        def delay(account_id: int) -> None:
            queued.append(account_id)

    monkeypatch.setattr(oms.tasks, "account_reconcile_task", Task, raising=False)
    response = staff_client.post(
        "/admin/brokers/brokeraccount/", {"action": "reconcile_selected_accounts", "_selected_action": [account.pk]}, follow=True
    )
    assert response.status_code == 200 and "Reconciliation queued for 1 account(s)." in response.content.decode()
    assert queued == [account.pk]
    # The kill switch actions are still there.
    page = staff_client.get("/admin/brokers/brokeraccount/").content.decode()
    assert "disable_trading" in page and "reconcile_selected_accounts" in page


# --- management commands --------------------------------------------------------------------------------


def test_send_change_and_cancel_order_from_the_cli(account, run_on_commit):
    sent = cli(
        "send_order",
        "--account-id", account.pk, "--symbol", "BTC/USDT", "--side", "buy", "--order-type", "limit", "--qty", "0.01", "--price", "50000",
        run_on_commit=run_on_commit,
    )  # fmt: skip
    assert sent["ok"] and sent["command"] == "send_order" and sent["status"] == "pending_new"
    order = Order.objects.get(pk=sent["order_id"])
    assert (order.status, order.qty, order.price, order.source) == ("new", Decimal("0.01"), Decimal(50000), "cli")
    assert order.events.get(kind="created").actor is None

    changed = cli("change_order", "--account-id", account.pk, "--order-id", order.pk, "--price", "50100", run_on_commit=run_on_commit)
    assert changed["status"] == "pending_change"
    order.refresh_from_db()
    assert order.price == Decimal(50100)

    canceled = cli("cancel_order", "--account-id", account.pk, "--order-id", order.pk, run_on_commit=run_on_commit)
    assert canceled["status"] == "pending_cancel"
    assert Order.objects.get(pk=order.pk).status == "canceled"


def test_close_position_close_by_and_reassign_from_the_cli(hedging, venue, run_on_commit):
    venue.mode = "fill"
    long = working_order(hedging, run_on_commit, order_type="market", price=None, qty="10").deals.get().position
    short = working_order(hedging, run_on_commit, order_type="market", price=None, side="sell", qty="4").deals.get().position
    extra = working_order(hedging, run_on_commit, order_type="market", price=None, qty="2", strategy_id="s1")

    booked = cli(
        "close_by", "--account-id", hedging.pk, "--position-id-a", long.pk, "--position-id-b", short.pk, run_on_commit=run_on_commit
    )
    assert booked["status"] == "done" and len(booked["deal_ids"]) == 2

    moved = cli(
        "reassign_position",
        "--account-id", hedging.pk, "--deal-ids", extra.deals.get().pk, "--target-strategy-id", "42", "--target-position-id", long.pk,
        run_on_commit=run_on_commit,
    )  # fmt: skip
    assert moved["command"] == "reassign" and len(moved["deal_ids"]) == 2
    long.refresh_from_db()
    assert long.qty == Decimal(8)

    closed = cli("close_position", "--account-id", hedging.pk, "--position-id", long.pk, run_on_commit=run_on_commit)
    assert closed["status"] == "pending_new"
    long.refresh_from_db()
    assert long.status == "closed"


def test_cancel_all_and_flatten_all_from_the_cli(account, venue, run_on_commit):
    working = [working_order(account, run_on_commit) for _ in range(2)]
    result = cli("cancel_all", "--account-id", account.pk, run_on_commit=run_on_commit)
    assert sorted(result["order_ids"]) == sorted(o.pk for o in working)
    venue.mode = "fill"
    position = working_order(account, run_on_commit, order_type="market", price=None).deals.get().position
    result = cli("flatten_all", "--account-id", account.pk, run_on_commit=run_on_commit)
    assert result["command"] == "flatten_all" and len(result["order_ids"]) == 1
    position.refresh_from_db()
    assert position.status == "closed"


def test_cli_idempotency_key_prints_the_stored_result(account, run_on_commit):
    args = ["--account-id", account.pk, "--symbol", "AAPL", "--side", "buy", "--order-type", "limit", "--qty", "1", "--price", "90"]
    first = cli("send_order", *args, "--idempotency-key", "cli-1", run_on_commit=run_on_commit)
    again = cli("send_order", *args, "--idempotency-key", "cli-1", run_on_commit=run_on_commit)
    assert first == again and Order.objects.count() == 1


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("send_order", ["--symbol", "NOPE", "--side", "buy", "--order-type", "market", "--qty", "1"], "Unknown or inactive symbol"),
        ("send_order", ["--symbol", "AAPL", "--side", "buy", "--order-type", "limit", "--qty", "1"], "needs a price"),
        ("send_order", ["--symbol", "AAPL", "--side", "buy", "--order-type", "market", "--qty", "0.5"], "lot size"),
        ("cancel_order", ["--order-id", "999999"], "No such order"),
        ("close_position", ["--position-id", "999999"], "No such position"),
        ("change_order", ["--order-id", "999999", "--price", "1"], "No such order"),
    ],
)
def test_cli_refusals_are_command_errors_and_change_nothing(account, run_on_commit, name, args, message):
    with pytest.raises(CommandError, match=message):
        cli(name, "--account-id", account.pk, *args, run_on_commit=run_on_commit)
    assert Order.objects.count() == 0


def test_cli_unknown_account_is_a_command_error(db):
    with pytest.raises(CommandError, match="No such account"):
        call_command("cancel_all", "--account-id", "999999", stdout=StringIO())


def test_cli_kill_switch_refuses_send(account, run_on_commit):
    BrokerAccount.objects.filter(pk=account.pk).update(trading_enabled=False)
    args = ["--account-id", account.pk, "--symbol", "AAPL", "--side", "buy", "--order-type", "market", "--qty", "1"]
    with pytest.raises(CommandError, match="Trading is disabled"):
        cli("send_order", *args, run_on_commit=run_on_commit)
    assert Order.objects.count() == 0
