"""Account sync: the first sync books what the broker already holds (so
selling a holding reduces it), later syncs only compare and report drift,
one sync per account at a time, a failing account never blocks the others,
and each outcome shows on the account and in /metrics."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from brokers import registry
from brokers.base import BrokerRateLimited, BrokerUnavailable, Holding
from brokers.models import BrokerAccount
from brokers.services import broker_account_create
from oms.models import Deal, DealKind, FundsProjection, Order, Position
from oms.services.positions import positions_rebuild
from oms.services.sync import account_sync, accounts_sync_all, sync_counters
from tests.fakes import FakeBroker, FakeVenue
from tests.oms_support import make_account, send, venue_registered
from tests.registry_support import token_hooks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("oms_env")]

D = Decimal


@dataclass
class HeldVenue(FakeVenue):
    """A venue where the account already holds shares bought before the
    terminal knew it (``held``: symbol -> (qty, avg price)); its fills move
    the holdings. ``script`` answers the next holdings() calls instead (a
    trade while the sync looks); ``down`` makes every account whose label is
    in it unreachable; ``gate`` blocks holdings() until set."""

    held: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    script: list[dict[str, tuple[Decimal, Decimal]]] = field(default_factory=list)
    down: set[str] = field(default_factory=set)
    gate: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    on_second_look: Callable[[], None] | None = None
    looks: int = 0

    def broker(self, account):  # the registry factory
        self.account_id = account.pk
        return HeldBroker(self, account.label)


class HeldBroker(FakeBroker):
    def __init__(self, venue: HeldVenue, label: str) -> None:
        super().__init__(venue)
        self.venue: HeldVenue = venue
        self.label = label

    def _check(self) -> None:
        if self.label in self.venue.down:
            raise BrokerUnavailable("Connection refused for appkey test-app_key (fake).")

    def holdings(self) -> list[Holding]:
        self._check()
        self.venue.looks += 1
        if self.venue.looks == 2 and self.venue.on_second_look is not None:
            self.venue.on_second_look()
        self.venue.entered.set()
        if self.venue.gate is not None:
            assert self.venue.gate.wait(10)
        book = dict(self.venue.script.pop(0)) if self.venue.script else self._book()
        return [Holding(symbol=s, qty=q, avg_price=p) for s, (q, p) in sorted(book.items()) if q]

    def _book(self) -> dict[str, tuple[Decimal, Decimal]]:
        book = dict(self.venue.held)
        for fill in self.venue.fills:
            qty, price = book.get(fill.symbol, (D(0), fill.price))
            book[fill.symbol] = (qty + (fill.qty if fill.side == "buy" else -fill.qty), price)
        return book

    def positions(self):
        self._check()
        return []  # a cash account: everything is a holding

    def funds(self):
        self._check()
        return super().funds()


@pytest.fixture
def venue():
    venue = HeldVenue(held={"AAA": (D(10), D(50))})
    with venue_registered(venue):
        yield venue


@pytest.fixture
def account(alice):
    return make_account(alice)


def external_deals(account) -> list[Deal]:
    return list(Deal.objects.filter(account=account, kind=DealKind.EXTERNAL).order_by("id"))


# --- the first sync and after -----------------------------------------------------------------


def test_the_first_sync_books_the_holding_so_selling_it_reduces_the_position(account, venue):
    summary = account_sync(account_id=account.pk)
    assert (summary.outcome, summary.initial, summary.held) == ("ok", True, 1)
    assert [(b["symbol"], b["side"], b["qty"], b["price"]) for b in summary.booked] == [("AAA", "buy", "10", "50")]
    [deal] = external_deals(account)
    assert (deal.symbol, deal.side, deal.qty, deal.price, deal.order_id) == ("AAA", "buy", D(10), D(50), None)
    position = Position.objects.get(account=account)
    assert (position.side, position.qty, position.avg_price, position.status) == ("long", D(10), D(50), "open")
    account.refresh_from_db()
    assert account.initial_synced_at is not None and account.last_synced_at is not None
    assert account.last_sync_error == "" and account.last_sync_duration is not None
    assert FundsProjection.objects.filter(account=account).exists()
    assert positions_rebuild(account=account) == []

    venue.mode = "fill"  # fills at 100
    send(account, side="sell", qty="4")
    position.refresh_from_db()
    assert (position.side, position.qty, position.realized_pnl) == ("long", D(6), D(200))  # a reduction, not a short
    assert Position.objects.filter(account=account).count() == 1

    again = account_sync(account_id=account.pk)
    assert (again.outcome, again.initial, again.booked, again.drift) == ("ok", False, [], [])
    assert len(external_deals(account)) == 1
    assert positions_rebuild(account=account) == []


def test_a_second_sync_does_not_book_the_holding_twice(account, venue):
    account_sync(account_id=account.pk)
    first = account_sync(account_id=account.pk)
    second = account_sync(account_id=account.pk)
    assert first.booked == second.booked == []
    assert len(external_deals(account)) == 1
    assert Position.objects.get(account=account).qty == D(10)


def test_the_brokers_open_orders_and_the_days_fills_are_imported_as_external(account, venue):
    from tests.oms_support import venue_external_order

    bought = venue_external_order(venue, symbol="BBB", qty=D(3), fill=True)  # bought on the broker's own app today
    working = venue_external_order(venue, symbol="BBB", side="sell", qty=D(1), fill=False)  # still working there
    summary = account_sync(account_id=account.pk)
    assert summary.outcome == "ok" and summary.reconcile["fills_booked"] == 1
    orders = {o.client_order_id: o for o in Order.objects.filter(account=account)}
    assert (orders[bought].source, orders[bought].status) == ("external", "filled")
    assert (orders[working].source, orders[working].status) == ("external", "new")
    # The day's buy is a trade already: only the older holding is booked as external.
    assert [(d.symbol, d.qty) for d in external_deals(account)] == [("AAA", D(10))]
    assert {p.symbol: p.qty for p in Position.objects.filter(account=account)} == {"AAA": D(10), "BBB": D(3)}


def test_later_syncs_report_drift_and_never_overwrite(account, venue, staff):
    account_sync(account_id=account.pk)
    before = sync_counters()["drift"]["kis"]
    venue.held["AAA"] = (D(12), D(50))  # bought elsewhere, and no fill reached us
    summary = account_sync(account_id=account.pk)
    assert summary.outcome == "ok"
    assert summary.drift == [{"symbol": "AAA", "broker_qty": "12", "terminal_qty": "10"}]
    assert Position.objects.get(account=account).qty == D(10)
    assert len(external_deals(account)) == 1
    assert sync_counters()["drift"]["kis"] == before + 1
    client = Client()
    client.force_login(staff)
    notes = client.get(f"/api/v1/accounts/{account.pk}/status")
    assert notes.status_code == 404  # staff is not the owner: the API is per user
    from brokers.connection import broker_account_sync_notes

    assert broker_account_sync_notes(account=account) == ["Drift: AAA: the broker holds 12, the terminal 10."]


def test_a_holding_that_moves_while_syncing_is_booked_by_the_next_sync(account, venue):
    venue.script = [{"AAA": (D(10), D(50))}, {"AAA": (D(15), D(52))}]  # a buy landed between the two looks
    summary = account_sync(account_id=account.pk)
    assert (summary.outcome, summary.moving, summary.booked) == ("ok", ["AAA"], [])
    account.refresh_from_db()
    assert account.initial_synced_at is None  # the first sync is not over
    venue.held["AAA"] = (D(15), D(52))
    summary = account_sync(account_id=account.pk)
    assert [(b["qty"], b["price"]) for b in summary.booked] == [("15", "52")]
    account.refresh_from_db()
    assert account.initial_synced_at is not None


def test_a_fill_booked_while_the_broker_is_asked_again_defers_that_symbol(account, venue):
    from datetime import UTC, datetime

    from brokers.base import Fill

    def fill_arrives() -> None:  # a fill notice lands; the broker's balance does not show it yet
        fill = Fill(broker_trade_id="N1", broker_order_id="X1", client_order_id=None, symbol="AAA", side="buy", qty=D(2), price=D(60))
        registry.deliver_fills(account.pk, [Fill(**{**fill.__dict__, "executed_at": datetime.now(UTC)})])

    venue.script = [{"AAA": (D(10), D(50))}, {"AAA": (D(10), D(50))}]
    venue.on_second_look = fill_arrives
    summary = account_sync(account_id=account.pk)
    assert (summary.outcome, summary.moving, summary.booked) == ("ok", ["AAA"], [])
    venue.held["AAA"] = (D(12), D("51.666666666667"))  # the broker shows it now: 10 @ 50 and 2 @ 60
    venue.on_second_look = None
    summary = account_sync(account_id=account.pk)
    assert [b["qty"] for b in summary.booked] == ["10"]
    assert abs(D(summary.booked[0]["price"]) - D(50)) < D("0.000001")  # what the older shares cost
    position = Position.objects.get(account=account)
    assert position.qty == D(12) and abs(position.avg_price - D("51.666666666667")) < D("0.000001")
    assert positions_rebuild(account=account) == []


def test_a_paper_account_syncs_with_nothing_to_book(alice, settings):
    settings.SIMULATOR_ENABLED = False
    paper = broker_account_create(owner=alice, label="paper")
    summary = account_sync(account_id=paper.pk)
    assert (summary.outcome, summary.initial, summary.booked, summary.drift) == ("ok", True, [], [])
    paper.refresh_from_db()
    assert paper.initial_synced_at is not None and paper.last_sync_error == ""
    assert FundsProjection.objects.get(account=paper).currency == "USD"
    assert account_sync(account_id=paper.pk).drift == []


# --- one at a time, failures isolated, outcomes recorded ----------------------------------------------


def test_a_sync_asked_while_one_runs_is_skipped_not_queued(account, venue):
    venue.gate = threading.Event()
    results = {}

    def first() -> None:
        from django.db import connection

        try:
            results["first"] = account_sync(account_id=account.pk)
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert venue.entered.wait(10)
        skipped = account_sync(account_id=account.pk)
    finally:
        venue.gate.set()
        thread.join(20)
    assert (skipped.outcome, skipped.message) == ("skipped", "A sync of this account is running.")
    assert results["first"].outcome == "ok"
    assert len(external_deals(account)) == 1


def test_a_failing_account_does_not_block_the_others_and_its_error_is_masked(alice, venue, staff):
    broken = make_account(alice, label="broken")
    fine = make_account(alice, label="fine")
    venue.down = {"broken"}
    before = sync_counters()["syncs"]
    summaries = {s.account_id: s for s in accounts_sync_all()}
    assert summaries[broken.pk].outcome == "error"
    assert summaries[fine.pk].outcome == "ok"
    broken.refresh_from_db()
    fine.refresh_from_db()
    assert "Connection refused" in broken.last_sync_error and "test-app_key" not in broken.last_sync_error
    assert broken.last_error == broken.last_sync_error and broken.last_synced_at is None
    assert fine.last_synced_at is not None and fine.last_sync_error == ""
    after = sync_counters()["syncs"]
    assert after[("kis", "error")] == before[("kis", "error")] + 1
    assert after[("kis", "ok")] == before[("kis", "ok")] + 1

    client = Client()
    client.force_login(staff)
    metrics = client.get("/metrics").content.decode()
    assert f'terminal_account_syncs_total{{kind="kis",outcome="error"}} {after[("kis", "error")]}.0' in metrics
    assert 'terminal_account_sync_failing{kind="kis"} 1.0' in metrics
    assert 'terminal_account_sync_accounts{kind="kis"} 2.0' in metrics
    assert "terminal_account_sync_oldest_age_seconds" in metrics and "terminal_account_sync_max_duration_seconds" in metrics
    assert "test-app_key" not in metrics

    venue.down = set()
    assert account_sync(account_id=broken.pk).outcome == "ok"
    broken.refresh_from_db()
    assert broken.last_sync_error == "" and broken.last_synced_at is not None


def test_the_tasks_fan_out_to_real_accounts_and_return_quietly_for_a_missing_one(alice, venue):
    from oms.tasks import account_sync_task, accounts_sync_all_task

    real = make_account(alice, label="real")
    broker_account_create(owner=alice, label="paper")
    assert accounts_sync_all_task() == [real.pk]
    real.refresh_from_db()
    assert real.last_synced_at is not None
    assert account_sync_task(999999)["outcome"] == "missing"


# --- on demand: the API and the admin -------------------------------------------------------------


def test_post_sync_runs_it_on_the_embedded_default_and_answers_the_summary(account, venue, alice_api, bob_api, alice_read_key):
    response = alice_api.post(f"/api/v1/accounts/{account.pk}/sync")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["account_id"], body["outcome"], body["initial"]) == (account.pk, "ok", True)
    assert body["booked"][0]["symbol"] == "AAA"
    for client in (bob_api,):
        denied = client.post(f"/api/v1/accounts/{account.pk}/sync")
        assert denied.status_code == 404 and denied.json()["error"]["code"] == "not_found"
    reader = Client(HTTP_X_API_KEY=alice_read_key)
    refused = reader.post(f"/api/v1/accounts/{account.pk}/sync", content_type="application/json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert len(external_deals(account)) == 1


def test_post_sync_queues_it_for_a_worker_in_production(account, venue, alice_api, monkeypatch):
    import oms.tasks
    from config.celery import app

    queued: list[int] = []
    monkeypatch.setattr(oms.tasks.account_sync_task, "delay", queued.append)
    app.conf.task_always_eager = False
    try:
        response = alice_api.post(f"/api/v1/accounts/{account.pk}/sync")
    finally:
        app.conf.task_always_eager = True
    assert response.status_code == 202
    assert response.json() == {"account_id": account.pk, "status": "queued"}
    assert queued == [account.pk]


def test_admin_sync_now_and_refresh_token_now(account, venue, staff):
    from brokers.tokens import TokenIssueTooSoon

    client = Client()
    client.force_login(staff)
    url = reverse("admin:brokers_brokeraccount_changelist")
    page = client.post(url, {"action": "sync_now", "_selected_action": [account.pk]}, follow=True).content.decode()
    assert f"#{account.pk}: synced in" in page and "1 external booking(s)" in page
    assert len(external_deals(account)) == 1

    calls = []

    def refresher(acct: BrokerAccount, *, force: bool) -> list[str]:
        calls.append((acct.pk, force))
        if len(calls) > 1:
            raise TokenIssueTooSoon("Token issued within the minute for appkey test-app_key.", retry_after=42)
        return ["access_token", "approval_key"]

    with token_hooks("kis", refresher=refresher):
        page = client.post(url, {"action": "refresh_tokens_now", "_selected_action": [account.pk]}, follow=True).content.decode()
        assert f"#{account.pk}: refreshed access_token, approval_key." in page
        page = client.post(url, {"action": "refresh_tokens_now", "_selected_action": [account.pk]}, follow=True).content.decode()
        assert "Retry in 42 s." in page and "test-app_key" not in page
    assert calls == [(account.pk, True), (account.pk, True)]
    with token_hooks("kis", refresher=None):
        page = client.post(url, {"action": "refresh_tokens_now", "_selected_action": [account.pk]}, follow=True).content.decode()
    assert "have no broker tokens to refresh" in page

    change = client.get(reverse("admin:brokers_brokeraccount_change", args=[account.pk])).content.decode()
    assert "Connection health" in change and "first sync done" in change and "not running" in change


# --- token refresh ahead of expiry ----------------------------------------------------------------------


def test_the_scheduled_token_refresh_asks_each_active_account_and_survives_a_failure(alice, venue):
    from brokers.tasks import broker_tokens_refresh_task

    first = make_account(alice, label="first")
    second = make_account(alice, label="second")
    broker_account_create(owner=alice, label="paper")
    disabled = make_account(alice, label="disabled")
    BrokerAccount.objects.filter(pk=disabled.pk).update(status="disabled")
    calls = []

    def refresher(acct: BrokerAccount, *, force: bool) -> list[str]:
        calls.append((acct.pk, force))
        if acct.pk == first.pk:
            raise BrokerRateLimited("slow down, secret test-app_secret", retry_after=1)
        return ["access_token"]

    with token_hooks("kis", refresher=refresher):
        result = broker_tokens_refresh_task()
    assert calls == [(first.pk, False), (second.pk, False)]
    assert result["refreshed"] == {str(second.pk): ["access_token"]}
    assert "test-app_secret" not in result["failed"][str(first.pk)]


# --- schedules ---------------------------------------------------------------------------------------


def test_the_default_periodic_tasks_exist_and_an_edit_survives_the_next_migrate(settings):
    from django_celery_beat.models import PeriodicTask

    from config.celery import app
    from oms.schedules import periodic_tasks_install

    app.loader.import_default_modules()
    tasks = {t.name: t for t in PeriodicTask.objects.all()}
    for name in ("oms.accounts_sync_all", "oms.accounts_reconcile_all", "brokers.tokens_refresh", "oms.orders_sweep"):
        assert name in tasks and tasks[name].task in app.tasks and tasks[name].enabled, name
    assert tasks["oms.accounts_sync_all"].interval.every == int(settings.ACCOUNT_SYNC_INTERVAL)
    sync = tasks["oms.accounts_sync_all"]
    sync.interval.every = 60
    sync.interval.save()
    sync.enabled = False
    sync.save()
    call_command("migrate", "oms", verbosity=0)
    assert periodic_tasks_install() == []
    sync.refresh_from_db()
    assert (sync.interval.every, sync.enabled) == (60, False)


# --- production mode: a real worker runs the queued sync ---------------------------------------------


@pytest.mark.redis
def test_a_real_celery_worker_runs_the_sync_the_api_queued(celery_worker_process, server_tmp, alice, alice_api):
    import time

    from config.celery import app

    paper = broker_account_create(owner=alice, label="paper")
    app.conf.task_always_eager = False
    try:
        response = alice_api.post(f"/api/v1/accounts/{paper.pk}/sync")
    finally:
        app.conf.task_always_eager = True
    assert response.status_code == 202 and response.json() == {"account_id": paper.pk, "status": "queued"}
    deadline = time.monotonic() + 30
    while paper.last_synced_at is None and time.monotonic() < deadline:
        time.sleep(0.2)
        paper.refresh_from_db()
    log = (server_tmp / "celery-worker.log").read_text()[-3000:]
    assert paper.last_synced_at is not None, log
    assert paper.initial_synced_at is not None and paper.last_sync_error == "" and paper.last_sync_duration is not None
    assert FundsProjection.objects.filter(account=paper).exists()


# --- the KIS adapter against the fake KIS server over real sockets --------------------------------------


def test_a_kis_holding_is_booked_by_the_first_sync_and_a_sale_reduces_it(settings, alice):
    from tests.kis_support import CANO, CODE, PRICE, SYMBOL, kis_running

    with kis_running(settings, alice) as kis:
        kis.server.add_holding(CANO, CODE, 10, 65000, "SAMSUNG ELECTRONICS")  # bought before the terminal knew the account
        summary = account_sync(account_id=kis.account.pk)
        assert summary.outcome == "ok", summary.error
        assert [(b["symbol"], b["side"], b["qty"], b["price"]) for b in summary.booked] == [(SYMBOL, "buy", "10", "65000")]
        assert FundsProjection.objects.get(account=kis.account).currency == "KRW"

        order = kis.send(side="sell", qty="4")
        assert kis.reconcile().fills_booked == 1
        order.refresh_from_db()
        assert order.status == "filled"
        position = Position.objects.get(account=kis.account)
        assert (position.side, position.qty, position.realized_pnl) == ("long", D(6), 4 * (PRICE - 65000))

        again = account_sync(account_id=kis.account.pk)
        assert (again.outcome, again.booked, again.drift) == ("ok", [], [])
        assert len(external_deals(kis.account)) == 1
        assert positions_rebuild(account=kis.account) == []


def test_a_kis_holding_the_terminal_does_not_know_gets_its_krx_instrument_in_won(settings, alice):
    from marketdata.models import Instrument
    from tests.kis_support import CANO, kis_running

    with kis_running(settings, alice) as kis:
        kis.server.set_price("000660", 180000, name="SK HYNIX")
        kis.server.add_holding(CANO, "000660", 3, 175000, "SK HYNIX")
        summary = account_sync(account_id=kis.account.pk)
        assert summary.outcome == "ok", summary.error
        assert [(b["symbol"], b["qty"], b["price"]) for b in summary.booked] == [("KRX:000660", "3", "175000")]
        instrument = Instrument.objects.get(symbol="KRX:000660")
        assert (instrument.venue, instrument.code, instrument.currency, instrument.quote_source) == ("KRX", "000660", "KRW", "kis")
        assert instrument.description == "SK HYNIX"
        position = Position.objects.get(account=kis.account, symbol="KRX:000660")
        assert (position.qty, position.currency) == (D(3), "KRW")
