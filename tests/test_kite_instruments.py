"""Kite's instrument master (CSV) into instruments, from the fake Kite with a
logged-in account (``manage.py import_kite_instruments``) and from a file:
venues, symbols, sizes, expiry, strike, option type, segment, the instrument
token, and derivatives linked to their underlying; a second run changes nothing."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from brokers.kite.fake import Instrument as KiteInstrument
from brokers.kite.instruments import kite_instruments_import, rows_from_csv
from marketdata.models import Instrument
from tests import kite_support

pytestmark = pytest.mark.django_db(transaction=True)

fake_kite = kite_support.fake_kite  # the fixtures
kite_account = kite_support.kite_account


def _derivatives(fake) -> None:
    fake.add_instrument(
        KiteInstrument(
            12345,
            "NFO",
            "NIFTY30DEC24000CE",
            name="NIFTY",
            expiry="2030-12-30",
            strike=Decimal(24000),
            lot_size=75,
            instrument_type="CE",
            segment="NFO-OPT",
        )
    )
    fake.add_instrument(
        KiteInstrument(
            12346, "NFO", "NIFTY30DECFUT", name="NIFTY", expiry="2030-12-30", lot_size=75, instrument_type="FUT", segment="NFO-FUT"
        )
    )
    fake.add_instrument(
        KiteInstrument(
            12347,
            "NFO",
            "INFY30DEC1500PE",
            name="INFY",
            expiry="2030-12-30",
            strike=Decimal("1500"),
            lot_size=400,
            instrument_type="PE",
            segment="NFO-OPT",
        )
    )
    fake.add_instrument(
        KiteInstrument(
            12348,
            "MCX",
            "GOLD30DECFUT",
            name="GOLD",
            expiry="2030-12-30",
            tick_size=Decimal(1),
            lot_size=1,
            instrument_type="FUT",
            segment="MCX-FUT",
        )
    )


def test_the_import_command_brings_kites_master_with_its_links(kite_account, fake_kite):
    _derivatives(fake_kite)
    out, err = StringIO(), StringIO()
    call_command("import_kite_instruments", str(kite_account.pk), stdout=out, stderr=err)
    assert "100% 6/6" in err.getvalue()
    assert "6 rows" in out.getvalue() and "linked to their underlying" in out.getvalue(), out.getvalue()
    nifty = Instrument.objects.get(symbol="NSE:NIFTY_50")
    assert (nifty.type, nifty.segment, nifty.broker_codes, nifty.venue) == ("index", "INDICES", {"kite": kite_support.NIFTY_TOKEN}, "NSE")
    call = Instrument.objects.get(symbol="NFO:NIFTY30DEC24000CE")
    assert (call.type, call.option_type, call.strike, call.expiry, call.lot_size) == (
        "option",
        "call",
        Decimal(24000),
        date(2030, 12, 30),
        Decimal(75),
    )
    assert (call.segment, call.currency, call.broker_codes, call.quote_source) == ("NFO-OPT", "INR", {"kite": 12345}, "kite")
    assert call.underlying_id == nifty.pk
    assert Instrument.objects.get(symbol="NFO:NIFTY30DECFUT").underlying_id == nifty.pk
    put = Instrument.objects.get(symbol="NFO:INFY30DEC1500PE")
    assert put.underlying.symbol == "NSE:INFY" and put.option_type == "put"
    gold = Instrument.objects.get(symbol="MCX:GOLD30DECFUT")
    assert (gold.type, gold.tick_size, gold.underlying_id, gold.timezone) == ("future", Decimal(1), None, "Asia/Kolkata")
    infy = Instrument.objects.get(symbol="NSE:INFY")
    assert (infy.broker_codes, infy.tick_size, infy.type) == ({"kite": kite_support.TOKEN}, Decimal("0.05"), "stock")
    # Again: nothing changes.
    out = StringIO()
    call_command("import_kite_instruments", str(kite_account.pk), stdout=out, stderr=StringIO())
    assert "0 created, 0 updated, 6 unchanged" in out.getvalue(), out.getvalue()


def test_a_changed_listing_updates_and_bad_rows_are_skipped_and_named(db):
    header = (
        "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange\n"
    )
    first = header + "408065,1594,INFY,INFOSYS,0,,0,0.05,1,EQ,NSE,NSE\n"
    assert kite_instruments_import(rows_from_csv(first)).created == 1
    second = (
        header
        + "408065,1594,INFY,INFOSYS LTD,0,,0,0.10,1,EQ,NSE,NSE\n"
        + "x,1,BAD,,0,,0,0.05,1,EQ,NSE,NSE\n"
        + "9,1,ODD,,0,,0,0.05,1,EQ,XYZ-,XYZ-\n"
    )
    summary = kite_instruments_import(rows_from_csv(second))
    assert (summary.updated, summary.skipped) == (1, 2), summary.as_dict()
    infy = Instrument.objects.get(symbol="NSE:INFY")
    assert (infy.tick_size, infy.description) == (Decimal("0.10"), "INFOSYS LTD")
    with pytest.raises(ValueError, match="missing columns"):
        list(rows_from_csv("a,b\n1,2\n"))


def test_the_command_refuses_an_account_that_is_not_kites(alice):
    from brokers.services import broker_account_create

    paper = broker_account_create(owner=alice, kind="paper", label="p")
    with pytest.raises(CommandError, match="No Kite account"):
        call_command("import_kite_instruments", str(paper.pk))


def test_derivatives_link_to_their_underlying_whatever_the_order_and_across_batches(db):
    """The bulk import writes underlyings before derivatives: a derivative listed
    before its underlying, an underlying that replaces a simulated instrument
    of its name, and a re-pointed underlying all end linked to the broker's row."""
    from marketdata.instruments import VenueItem, instruments_bulk_import
    from marketdata.services import instrument_upsert

    instrument_upsert(symbol="NSE:TCS", type="stock", currency="INR", tick_size=Decimal("0.05"), sim_params={"price": 3000.0})
    future = {"type": "future", "expiry": date(2030, 12, 30), "lot_size": Decimal(50)}
    items = [
        VenueItem("NFO", "INFY30DECFUT", "INFY30DECFUT", future, "NSE:INFY"),
        VenueItem("NFO", "TCS30DECFUT", "TCS30DECFUT", future, "NSE:TCS"),
        VenueItem("NFO", "WIPRO30DECFUT", "WIPRO30DECFUT", future, "NSE:WIPRO"),  # no such underlying: left unlinked
        VenueItem("NSE", "INFY", "INFOSYS", {"type": "stock"}),
        VenueItem("NSE", "TCS", "TCS", {"type": "stock"}),
    ]
    seen: list[int] = []
    result = instruments_bulk_import(items, progress=seen.append, batch_size=2)
    assert (result.created, result.linked, result.skipped) == (5, 2, 0), result.as_dict()
    assert [(m.old_symbol, m.new_symbol) for m in result.moved_aside] == [("NSE:TCS", "SIM:NSE:TCS")]
    assert seen[-1] == 5
    infy, tcs = Instrument.objects.get(symbol="NSE:INFY"), Instrument.objects.get(symbol="NSE:TCS")
    assert Instrument.objects.get(symbol="NFO:INFY30DECFUT").underlying_id == infy.pk
    assert Instrument.objects.get(symbol="NFO:TCS30DECFUT").underlying_id == tcs.pk != Instrument.objects.get(symbol="SIM:NSE:TCS").pk
    assert Instrument.objects.get(symbol="NFO:WIPRO30DECFUT").underlying_id is None

    # Nothing changed: nothing written. The future re-listed on another underlying: re-pointed.
    again = instruments_bulk_import(items, batch_size=2)
    assert (again.created, again.updated, again.unchanged, again.linked) == (0, 0, 5, 0), again.as_dict()
    moved = [VenueItem("NFO", "INFY30DECFUT", "INFY30DECFUT", future, "NSE:TCS"), *items[1:]]
    relisted = instruments_bulk_import(moved, batch_size=2)
    assert (relisted.unchanged, relisted.linked) == (5, 1), relisted.as_dict()
    assert Instrument.objects.get(symbol="NFO:INFY30DECFUT").underlying_id == tcs.pk


def test_a_cold_import_writes_each_batch_in_one_statement(db, django_assert_max_num_queries):
    """A master of thousands of rows: a batch of new instruments is one INSERT
    (not one per few dozen rows), and every derivative arrives linked, with
    Django's defaults and conversions (decimals, dates, JSON) on each row."""
    header = (
        "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange\n"
    )
    lines = ["256265,1001,NIFTY 50,NIFTY 50,0,,0,0,0,EQ,INDICES,NSE", "408065,1594,INFY,INFOSYS,0,,0,0.05,1,EQ,NSE,NSE"]
    token = 20000
    for strike in range(20000, 20000 + 1500 * 5, 5):
        for kind, name in (("CE", "NIFTY"), ("PE", "INFY")):
            token += 1
            lines.append(f"{token},{token >> 8},ZQ30DEC{strike}{kind},{name},0,2030-12-30,{strike},0.05,75,{kind},NFO-OPT,NFO")
    rows = list(rows_from_csv(header + "\n".join(lines) + "\n"))
    assert len(rows) == 3002
    # Per 2,000 rows: its existing rows read, its inserts, its new underlyings' ids; plus the few around them.
    with django_assert_max_num_queries(16):
        summary = kite_instruments_import(rows)
    assert (summary.created, summary.linked, summary.skipped) == (3002, 3000, 0), summary.as_dict()
    nifty = Instrument.objects.get(symbol="NSE:NIFTY_50")
    call = Instrument.objects.get(symbol="NFO:ZQ30DEC20000CE")
    assert (call.underlying_id, call.strike, call.expiry, call.lot_size, call.broker_codes) == (
        nifty.pk,
        Decimal(20000),
        date(2030, 12, 30),
        Decimal(75),
        {"kite": 20001},
    )
    assert (call.multiplier, call.sim_params, call.active, call.min_amount, call.quote_source) == (Decimal(1), {}, True, None, "kite")
    assert call.created_at is not None and call.created_at == call.updated_at
    assert Instrument.objects.get(symbol="NFO:ZQ30DEC20000PE").underlying.symbol == "NSE:INFY"
    assert kite_instruments_import(rows).unchanged == 3002
