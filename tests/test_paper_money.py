"""The paper venue as a multi-currency brokerage account: a ledger of balances
per currency, conversions from the base currency at the market data's FX
rates, fees and P&L in the instrument's currency, funds in the base currency."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_CEILING
from decimal import Decimal as D
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from brokers import registry
from brokers.base import BrokerRejected, OrderRequest
from brokers.paper.adapter import PaperBroker
from brokers.paper.models import PaperBalance, PaperFill, PaperLedgerEntry
from brokers.paper.services import paper_ledger_adjust
from brokers.services import broker_account_create
from core.exceptions import InvalidInput
from marketdata.fx import fx_rate
from marketdata.quotes import quote_store, quotes_forget
from marketdata.services import instrument_upsert
from marketdata.types import Quote

pytestmark = pytest.mark.django_db(transaction=True)

NOW = 1_773_151_200.0
SCALE = D("0.0000000001")  # the book's scale: totals in the base currency are computed at it
SYMBOLS = ["005930", "NSE:INFY", "BTC/USDT", "KFUT", "PAPL", "USD/KRW", "USD/INR", "USDT/USD", "KRW/USD", "INR/USD", "USD/USDT"]


@pytest.fixture(autouse=True)
def market(db, settings):
    settings.SIMULATOR_ENABLED = False  # the quotes are the test's own: no simulated lookup of a missing one
    instrument_upsert(symbol="005930", type="stock", currency="KRW", tick_size=D(100), lot_size=D(1), multiplier=D(1))
    instrument_upsert(symbol="NSE:INFY", type="stock", currency="INR", tick_size=D("0.05"), lot_size=D(1), multiplier=D(1))
    instrument_upsert(symbol="BTC/USDT", type="crypto", currency="USDT", tick_size=D("0.1"), lot_size=D("0.0001"), multiplier=D(1))
    instrument_upsert(symbol="KFUT", type="future", currency="KRW", tick_size=D("0.05"), lot_size=D(1), multiplier=D(250_000))
    instrument_upsert(symbol="PAPL", type="stock", currency="USD", tick_size=D("0.01"), lot_size=D(1), multiplier=D(1))
    quotes_forget(SYMBOLS)
    quote("USD/KRW", "1380")
    quote("USD/INR", "83")
    quote("USDT/USD", "0.9990", "0.9992")
    yield
    quotes_forget(SYMBOLS)


def quote(symbol: str, bid: str, ask: str | None = None, *, t: float = NOW, size: str = "1000") -> Quote:
    q = Quote(symbol=symbol, time=t, last=D(bid), bid=D(bid), ask=D(ask or bid), bid_size=D(size), ask_size=D(size))
    quote_store(q)
    return q


@pytest.fixture(autouse=True)
def sink():
    """Fills go to a list, not to the OMS (these tests drive the venue alone)."""
    saved = (registry._fill_sink, registry._order_sink)
    fills: list = []
    registry.register_sinks(fills=lambda account_id, batch: fills.extend(batch), orders=lambda account_id, updates: None)
    yield fills
    registry._fill_sink, registry._order_sink = saved


@pytest.fixture
def account(alice):
    return broker_account_create(owner=alice, label="alice paper")


@pytest.fixture
def broker(account) -> PaperBroker:
    return PaperBroker(account, clock=lambda: NOW)


def req(side: str, qty: str, *, symbol: str = "005930", price: str | None = None, cid: str = "") -> OrderRequest:
    return OrderRequest(
        client_order_id=cid or f"{side}-{symbol}-{qty}-{price}",
        symbol=symbol,
        side=side,
        order_type="limit" if price else "market",
        qty=D(qty),
        price=None if price is None else D(price),
    )


def ledger(account, *fields: str) -> list[tuple]:
    return list(PaperLedgerEntry.objects.filter(account_id=account.pk).order_by("id").values_list(*fields))


def balances(account) -> dict[str, D]:
    return {c: a for c, a in PaperBalance.objects.filter(account_id=account.pk).values_list("currency", "amount") if a}


def ledger_sums(account) -> dict[str, D]:
    """Each currency's entries added up (in Python: SQLite would sum floats)."""
    totals: dict[str, D] = {}
    for currency, amount in PaperLedgerEntry.objects.filter(account_id=account.pk).values_list("currency", "amount"):
        totals[currency] = totals.get(currency, D(0)) + amount
    return {c: t for c, t in totals.items() if t}


def up(amount: D, places: str) -> D:
    return amount.quantize(D(places), rounding=ROUND_CEILING)


def test_a_usd_account_buys_005930_by_converting_the_won_it_lacks(broker, account):
    quote("005930", "50300", "50400")
    ack = broker.place_order(req("buy", "10", price="50400"))
    assert ack.status == "filled"

    krw = fx_rate("KRW", "USD", now=NOW)
    cost_krw = 10 * D(50400) + D("50.4")  # notional and the 1 bps fee, in won
    bought = up(cost_krw, "1")  # whole won
    paid = up(bought * krw, "0.01")  # whole cents
    assert paid == D("365.26") and 10 * D(50400) * krw < paid  # about qty x price x rate, not 504,000 dollars
    assert ledger(account, "kind", "currency", "amount", "trade_id") == [
        ("deposit", "USD", D(1_000_000), ""),
        ("fx_conversion", "USD", -paid, "PF000001"),
        ("fx_conversion", "KRW", bought, "PF000001"),
        ("trade", "KRW", D(-504_000), "PF000001"),
        ("fee", "KRW", D("-50.4"), "PF000001"),
    ]
    assert ledger(account, "rate")[2] == (krw,)
    assert balances(account) == {"USD": D(1_000_000) - paid, "KRW": bought - cost_krw} == ledger_sums(account)

    (fill,) = broker.fills_since(datetime(2026, 1, 1, tzinfo=UTC))
    assert (fill.fee, fill.fee_currency) == (D("50.4"), "KRW")
    assert PaperFill.objects.get().fee_currency == "KRW"

    funds = broker.funds()
    assert funds.currency == "USD"
    assert {b.currency: b.cash for b in funds.balances} == {"USD": D("999634.74"), "KRW": D("0.6")}
    assert funds.rates == {"USD": 1, "KRW": krw}
    assert funds.cash == (D("999634.74") + D("0.6") * krw).quantize(SCALE)
    # The shares are a holding valued at market once, in dollars; never a won balance as well.
    assert funds.equity == (funds.cash + 10 * D(50300) * krw).quantize(SCALE)
    assert funds.buying_power == funds.margin_available == funds.equity - funds.margin_used
    assert funds.margin_used == (10 * D(50300) * krw).quantize(SCALE)


def test_a_trader_can_always_reduce_and_sell_proceeds_stay_in_won(broker, account):
    quote("005930", "50400", "50400")
    broker.place_order(req("buy", "15", price="50400"))
    usd = balances(account)["USD"]
    # Take out every dollar: no buying power is left for anything new.
    paper_ledger_adjust(account_id=account.pk, currency="USD", amount=-usd, note="all out")
    with pytest.raises(BrokerRejected, match="Insufficient buying power"):
        broker.place_order(req("buy", "1", price="50400"))
    ack = broker.place_order(req("sell", "8", price="50400"))
    assert ack.status == "filled"
    assert broker.positions()[0].qty == 7
    krw_before = balances(account)["KRW"]
    assert "USD" not in balances(account)  # no conversion back
    assert krw_before == ledger_sums(account)["KRW"] > 8 * D(50400) - D(100)


def test_inr_and_usdt_purchases_convert_at_their_own_rates_and_funds_add_up_every_currency(broker, account, settings):
    quote("NSE:INFY", "1500", "1500")
    quote("BTC/USDT", "60000", "60000")
    quote("005930", "50400", "50400")
    broker.place_order(req("buy", "10", symbol="NSE:INFY", price="1500"))
    broker.place_order(req("buy", "0.5", symbol="BTC/USDT", price="60000"))
    paper_ledger_adjust(account_id=account.pk, currency="KRW", amount=D(1_000_000), note="wire in")
    broker.place_order(req("buy", "2", price="50400"))  # paid from the won deposited: no conversion

    inr, usdt, krw = (fx_rate(c, "USD", now=NOW) for c in ("INR", "USDT", "KRW"))
    conversions = ledger(account, "kind", "currency", "amount")
    assert [row for row in conversions if row[0] == "fx_conversion"] == [
        ("fx_conversion", "USD", -up(up(D("15001.5"), "0.01") * inr, "0.01")),
        ("fx_conversion", "INR", D("15001.50")),
        ("fx_conversion", "USD", -up(D("30003") * usdt, "0.01")),
        ("fx_conversion", "USDT", D("30003")),
    ]
    assert usdt == D("0.9991")  # USDT is worth USDT/USD dollars, not one dollar
    held = balances(account)
    assert held == ledger_sums(account)
    assert held["KRW"] == D(1_000_000) - 2 * D(50400) - D("10.08")

    funds = broker.funds()
    assert {b.currency: b.cash for b in funds.balances} == {c: held.get(c, D(0)) for c in ("INR", "KRW", "USD", "USDT")}
    assert funds.rates == {"USD": 1, "INR": inr, "KRW": krw, "USDT": usdt}
    assert funds.cash == sum(held[c] * funds.rates[c] for c in held).quantize(SCALE)
    holdings = 10 * D(1500) * inr + D("0.5") * D(60000) * usdt + 2 * D(50400) * krw
    assert funds.equity == (funds.cash + holdings).quantize(SCALE)


def test_refuse_mode_refuses_an_order_in_a_currency_the_account_lacks(broker, account, settings):
    settings.PAPER_FX_MODE = "refuse"
    quote("005930", "50400", "50400")
    with pytest.raises(BrokerRejected, match=r"needs 504050.4 KRW and the account holds 0 KRW.*PAPER_FX_MODE=refuse"):
        broker.place_order(req("buy", "10", price="50400"))
    assert [kind for (kind,) in ledger(account, "kind")] == ["deposit"]
    paper_ledger_adjust(account_id=account.pk, currency="KRW", amount=D(600_000))
    assert broker.place_order(req("buy", "10", price="50400", cid="again")).status == "filled"
    assert balances(account) == {"USD": D(1_000_000), "KRW": D(600_000) - D("504050.4")}


def test_an_order_in_a_currency_without_a_rate_is_refused(broker):
    quotes_forget(["USD/KRW"])
    quote("005930", "50400", "50400")
    with pytest.raises(BrokerRejected, match="No FX rate from KRW to USD"):
        broker.place_order(req("buy", "1", price="50400"))


def test_converting_needs_the_dollars_it_spends(alice, settings):
    settings.PAPER_STARTING_CASH = "300"
    settings.PAPER_STARTING_BALANCES = {"INR": "1000000"}  # buying power enough, in rupees
    broker = PaperBroker(broker_account_create(owner=alice, label="few dollars"), clock=lambda: NOW)
    quote("005930", "50400", "50400")
    with pytest.raises(BrokerRejected, match="Converting 504051 KRW for the order needs 365.26 USD, the account holds 300 USD"):
        broker.place_order(req("buy", "10", price="50400"))


def test_a_won_future_moves_won_cash_only_by_realized_pnl_and_fees(broker, account):
    paper_ledger_adjust(account_id=account.pk, currency="KRW", amount=D(10_000_000))
    quote("KFUT", "350.00", "350.00")
    broker.place_order(req("buy", "2", symbol="KFUT", price="350.00"))
    quote("KFUT", "352.00", "352.00", t=NOW + 1)
    broker.place_order(req("sell", "2", symbol="KFUT", price="352.00"))
    fee_open = 2 * D(350) * 250_000 / 10_000  # 1 bps of 175,000,000 won
    fee_close = 2 * D(352) * 250_000 / 10_000
    realized = 2 * D(2) * 250_000
    rows = ledger(account, "kind", "currency", "amount")
    assert rows[2:] == [("fee", "KRW", -fee_open), ("realized_pnl", "KRW", realized), ("fee", "KRW", -fee_close)]
    assert balances(account) == {"USD": D(1_000_000), "KRW": D(10_000_000) + realized - fee_open - fee_close} == ledger_sums(account)


def test_a_won_future_loss_beyond_the_won_held_is_converted_from_dollars(broker, account):
    quote("KFUT", "350.00", "350.00")
    broker.place_order(req("buy", "1", symbol="KFUT", price="350.00"))  # the fee alone needs won: converted
    quote("KFUT", "349.00", "349.00", t=NOW + 1)
    broker.place_order(req("sell", "1", symbol="KFUT", price="349.00"))
    kinds = [(kind, currency) for kind, currency in ledger(account, "kind", "currency")]
    assert kinds[1:] == [
        ("fx_conversion", "USD"),
        ("fx_conversion", "KRW"),
        ("fee", "KRW"),
        ("fx_conversion", "USD"),
        ("fx_conversion", "KRW"),
        ("realized_pnl", "KRW"),
        ("fee", "KRW"),
    ]
    held = balances(account)
    assert D(0) <= held.get("KRW", D(0)) < 1 and held == ledger_sums(account)


def test_deposits_and_withdrawals_are_ledger_entries_and_never_overdraw(account):
    paper_ledger_adjust(account_id=account.pk, currency="krw", amount=D(5_000_000), note="wire in")
    paper_ledger_adjust(account_id=account.pk, currency="KRW", amount=D(-1_000_000), note="wire out")
    with pytest.raises(InvalidInput, match="below zero"):
        paper_ledger_adjust(account_id=account.pk, currency="KRW", amount=D("-4000000.01"))
    with pytest.raises(InvalidInput):
        paper_ledger_adjust(account_id=account.pk, currency="INR", amount=D(-1))
    with pytest.raises(InvalidInput):
        paper_ledger_adjust(account_id=account.pk, currency="K W", amount=D(1))
    with pytest.raises(InvalidInput):
        paper_ledger_adjust(account_id=account.pk, currency="KRW", amount=D(0))
    with pytest.raises(InvalidInput, match="at most 10 decimal places"):
        paper_ledger_adjust(account_id=account.pk, currency="KRW", amount=D("1e17"))
    with pytest.raises(InvalidInput, match="at most 10 decimal places"):
        paper_ledger_adjust(account_id=account.pk, currency="KRW", amount=D("0.00000000001"))
    assert ledger(account, "kind", "currency", "amount", "note") == [
        ("deposit", "USD", D(1_000_000), "Starting balance"),
        ("deposit", "KRW", D(5_000_000), "wire in"),
        ("withdrawal", "KRW", D(-1_000_000), "wire out"),
    ]
    assert balances(account) == {"USD": D(1_000_000), "KRW": D(4_000_000)} == ledger_sums(account)


def test_only_paper_accounts_have_a_ledger_to_adjust(alice):
    kis = broker_account_create(owner=alice, kind="kis", label="kis")
    with pytest.raises(InvalidInput, match="paper"):
        paper_ledger_adjust(account_id=kis.pk, currency="KRW", amount=D(1))


def test_starting_balances_come_from_the_settings(alice, settings):
    settings.PAPER_STARTING_BALANCES = {"KRW": "50000000", "INR": "1000000"}
    account = broker_account_create(owner=alice, label="multi")
    funds = PaperBroker(account, clock=lambda: NOW).funds()
    assert {b.currency: b.cash for b in funds.balances} == {"INR": D(1_000_000), "KRW": D(50_000_000), "USD": D(1_000_000)}
    krw, inr = fx_rate("KRW", "USD", allow_stale=True), fx_rate("INR", "USD", allow_stale=True)
    assert funds.cash == (D(1_000_000) + D(50_000_000) * krw + D(1_000_000) * inr).quantize(SCALE)
    assert balances(account) == ledger_sums(account)
    assert sorted(ledger(account, "currency", "rate")) == [("INR", inr), ("KRW", krw), ("USD", 1)]


# --- the ledger in the API, the admin and the CLI ---------------------------------------------


def test_the_ledger_api_lists_a_paper_accounts_entries_to_its_owner_only(broker, account, alice_api, bob_api, alice):
    quote("005930", "50400", "50400")
    broker.place_order(req("buy", "10", price="50400"))
    url = f"/api/v1/accounts/{account.pk}/ledger"
    body = alice_api.get(url, {"limit": 3}).json()
    assert [(e["kind"], e["currency"]) for e in body["results"]] == [("fee", "KRW"), ("trade", "KRW"), ("fx_conversion", "KRW")]
    assert body["results"][0] == {
        "id": body["results"][0]["id"],
        "account_id": account.pk,
        "currency": "KRW",
        "amount": "-50.4",
        "kind": "fee",
        "rate": str(fx_rate("KRW", "USD", now=NOW)),
        "trade_id": "PF000001",
        "note": "",
        "created_at": "2026-03-10T14:00:00Z",
    }
    rest = alice_api.get(url, {"limit": 3, "cursor": body["next"]}).json()
    assert [(e["kind"], e["currency"], e["amount"]) for e in rest["results"]] == [
        ("fx_conversion", "USD", "-365.26"),
        ("deposit", "USD", "1000000"),
    ]
    assert rest["next"] is None
    assert [e["kind"] for e in alice_api.get(url + "/", {"currency": "USD", "kind": "deposit"}).json()["results"]] == ["deposit"]
    assert alice_api.get(url, {"kind": "bonus"}).status_code in (400, 422)
    assert bob_api.get(url).status_code == 404
    kis = broker_account_create(owner=alice, kind="kis", label="kis")
    response = alice_api.get(f"/api/v1/accounts/{kis.pk}/ledger")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def test_staff_deposit_and_withdraw_from_the_admin(staff_client, account, alice):
    changelist = "/admin/brokers/brokeraccount/"
    asked = staff_client.post(changelist, {"action": "paper_ledger_adjust_action", "_selected_action": [account.pk]})
    assert asked.status_code == 200 and b"Deposit or withdraw" in asked.content
    done = staff_client.post(
        changelist,
        {
            "action": "paper_ledger_adjust_action",
            "_selected_action": [account.pk],
            "apply": "1",
            "currency": "inr",
            "amount": "250000",
            "note": "top up",
        },
        follow=True,
    )
    assert b"Deposited 250000 INR on 1 account(s)." in done.content
    refused = staff_client.post(
        changelist,
        {"action": "paper_ledger_adjust_action", "_selected_action": [account.pk], "apply": "1", "currency": "INR", "amount": "-250001"},
        follow=True,
    )
    assert b"below zero" in refused.content
    assert balances(account) == {"USD": D(1_000_000), "INR": D(250_000)}
    kis = broker_account_create(owner=alice, kind="kis", label="kis")
    not_paper = staff_client.post(changelist, {"action": "paper_ledger_adjust_action", "_selected_action": [kis.pk]}, follow=True)
    assert b"Only paper accounts" in not_paper.content
    entries = staff_client.get("/admin/paper/paperledgerentry/")
    assert entries.status_code == 200 and b"top up" in entries.content
    assert staff_client.get(f"/admin/paper/paperaccount/{account.pk}/change/").status_code == 200


def test_the_paper_ledger_adjust_command_books_one_entry(account):
    out = StringIO()
    call_command(
        "paper_ledger_adjust", "--account-id", str(account.pk), "--currency", "USDT", "--amount", "1500.25", "--note", "airdrop", stdout=out
    )
    assert "deposit of 1500.25 USDT booked" in out.getvalue()
    call_command("paper_ledger_adjust", "--account-id", str(account.pk), "--currency", "USDT", "--amount", "-500.25", stdout=out)
    with pytest.raises(CommandError, match="below zero"):
        call_command("paper_ledger_adjust", "--account-id", str(account.pk), "--currency", "USDT", "--amount", "-1001")
    with pytest.raises(CommandError, match="plain decimal"):
        call_command("paper_ledger_adjust", "--account-id", str(account.pk), "--currency", "USDT", "--amount", "1e3")
    assert balances(account) == {"USD": D(1_000_000), "USDT": D(1000)} == ledger_sums(account)
