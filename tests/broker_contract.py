"""The Broker contract: what every adapter must do for the OMS, as cases that
run per capability.

A test module runs the suite against one broker by subclassing
``BrokerContract`` and giving it one fixture, ``harness``, that builds a
``BrokerHarness`` (an account the broker serves, an instrument it trades at a
known price, and how to make its next ``place_order`` fail). The paper broker
and the scripted fake run it in tests/test_broker_contract.py; a real
adapter (KIS, CCXT, Kite against its fake server on 127.0.0.1) adds one class
there with its own ``harness`` fixture.

The cases go through the OMS (the command layer, the services, eager Celery,
the real commit) where the OMS is the caller, and ask the broker directly
only to check what it says. Every broker call is recorded, so a case can
assert that something was refused before any call reached the broker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from brokers import registry
from brokers.base import ALL_ORDER_TYPES, ALL_TIMES_IN_FORCE, Broker, Capabilities
from brokers.models import BrokerAccount
from core.exceptions import DomainError
from marketdata.models import Instrument
from oms.models import Deal, Order, Position, PositionSide
from oms.services.commands import command_for, commands_run
from oms.services.reconcile import account_reconcile, order_lookup_at_broker
from oms.services.sweeper import orders_sweep
from tests.oms_support import broker_registered

#: The errors the protocol names. A harness lists those its broker can
#: produce on ``place_order``; the others are skipped for it.
ERROR_KINDS = ("rejected", "unavailable", "timeout", "auth_expired", "rate_limited")


@dataclass
class BrokerHarness:
    """How the suite drives one broker."""

    account: BrokerAccount  # an account the broker serves, configured
    symbol: str  # an instrument the broker trades, priced at ``price`` now
    price: Decimal
    error_kinds: frozenset[str]  # which of ERROR_KINDS its place_order can produce
    # ``inject(kind)``: while the block runs, the broker's place_order fails with that kind.
    inject: Callable[[str], AbstractContextManager[None]]
    calls: list[str] = field(default_factory=list)  # every broker method called (the suite records them)
    # How what the broker reports later reaches the OMS (a feed, polling): run
    # after each command. A broker that reports fills inside its calls (the
    # paper venue) needs nothing; KIS reports them by fill notice or by the
    # daily-orders query, so its harness runs reconciliation.
    settle: Callable[[], object] = lambda: None


class _Recorded:
    """The broker as built by its factory, with every method call noted."""

    def __init__(self, inner: Broker, calls: list[str]) -> None:
        self._inner = inner
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name.startswith("_") or not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(name)
            return attribute(*args, **kwargs)

        return call


def _later() -> Any:
    return timezone.now() + timedelta(seconds=settings.OMS_SWEEP_AFTER_SECONDS + 1)


def _after_grace() -> Any:
    return timezone.now() + timedelta(seconds=settings.OMS_RECONCILE_GRACE_SECONDS + 1)


class BrokerContract:
    """The cases. Subclass and provide the ``harness`` fixture."""

    #: Which of ERROR_KINDS the broker's place_order can produce: each gets its case.
    error_kinds: tuple[str, ...] = ERROR_KINDS

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "kind" in metafunc.fixturenames:
            metafunc.parametrize("kind", self.error_kinds)

    @pytest.fixture
    def harness(self) -> BrokerHarness:
        raise NotImplementedError("a contract class provides the harness fixture that builds its broker")

    @pytest.fixture(autouse=True)
    def _recorded(self, harness: BrokerHarness) -> Iterator[None]:
        kind = harness.account.kind
        factory = registry.broker_factory(kind)
        assert factory is not None, f"no adapter registered for {kind}"
        with broker_registered(kind, lambda account: _Recorded(factory(account), harness.calls)):
            yield

    # --- helpers -------------------------------------------------------------------------------

    def broker(self, harness: BrokerHarness) -> Broker:
        return registry.broker_for(harness.account)

    def capabilities(self, harness: BrokerHarness) -> Capabilities:
        return self.broker(harness).capabilities

    def tick(self, harness: BrokerHarness) -> Decimal:
        return Instrument.objects.get(symbol=harness.symbol).tick_size or Decimal("0.01")

    def on_tick(self, harness: BrokerHarness, price: Decimal) -> Decimal:
        tick = self.tick(harness)
        return (price / tick).to_integral_value(rounding=ROUND_DOWN) * tick

    def tif(self, harness: BrokerHarness) -> str:
        """A time in force the broker takes for an order that must rest."""
        taken = self.capabilities(harness).times_in_force
        return "gtc" if "gtc" in taken else "day" if "day" in taken else sorted(taken)[0]

    def run(self, harness: BrokerHarness, command: str, payload: dict[str, Any], *, settle: bool = True) -> Order | None:
        """One command through the OMS, as REST/WS/CLI run it, then what the
        broker reports later (``settle``); the order it names, fresh."""
        parsed = command_for(account=harness.account, command=command, payload=payload)
        outcome = commands_run(account=harness.account, commands=[parsed], actor=None, source="rest")
        if settle:
            harness.settle()
        order_id = outcome.results[0].order_id
        return None if order_id is None else Order.objects.get(pk=order_id)

    def resting(self, harness: BrokerHarness, **payload: Any) -> Order:
        """A buy limit well below the market: it rests (``payload`` overrides; None drops a field)."""
        body = {
            "symbol": harness.symbol,
            "side": "buy",
            "order_type": "limit",
            "qty": "1",
            "price": str(self.on_tick(harness, harness.price * Decimal("0.8"))),
            "time_in_force": self.tif(harness),
            **payload,
        }
        order = self.run(harness, "send_order", {k: v for k, v in body.items() if v is not None})
        assert order is not None
        return order

    def marketable(self, harness: BrokerHarness, qty: str = "1", side: str = "buy", *, settle: bool = True) -> Order:
        """An order that fills at once: market where taken, else a limit through the price."""
        body: dict[str, Any] = {"symbol": harness.symbol, "side": side, "qty": qty, "time_in_force": self.tif(harness)}
        if "market" in self.capabilities(harness).order_types:
            body["order_type"] = "market"
        else:
            through = harness.price * (Decimal("1.1") if side == "buy" else Decimal("0.9"))
            body.update(order_type="limit", price=str(self.on_tick(harness, through)))
        order = self.run(harness, "send_order", body, settle=settle)
        assert order is not None
        return order

    # --- capabilities ------------------------------------------------------------------------------

    def test_capabilities_name_what_the_broker_takes(self, harness):
        caps = self.capabilities(harness)
        assert isinstance(caps, Capabilities)
        assert "limit" in caps.order_types and caps.order_types <= ALL_ORDER_TYPES
        assert caps.times_in_force and caps.times_in_force <= ALL_TIMES_IN_FORCE

    def test_every_order_type_and_time_in_force_it_declares_is_accepted(self, harness):
        caps = self.capabilities(harness)
        above = self.on_tick(harness, harness.price * Decimal("1.2"))
        below = self.on_tick(harness, harness.price * Decimal("0.8"))
        payloads = {
            "market": {"order_type": "market", "price": None},
            "limit": {"order_type": "limit", "price": str(below)},
            "stop": {"order_type": "stop", "price": None, "stop_price": str(above)},  # a buy stop above: waits
            "stop_limit": {"order_type": "stop_limit", "price": str(above + self.tick(harness)), "stop_price": str(above)},
        }
        for order_type in sorted(caps.order_types):
            order = self.resting(harness, **payloads[order_type])
            assert order.status in ("new", "partially_filled", "filled"), (order_type, order.status, order.status_message)
        for tif in sorted(caps.times_in_force):
            order = self.resting(harness, time_in_force=tif)
            # An IOC that cannot fill is canceled by the venue; never refused.
            assert order.status in ("new", "canceled") and (tif == "ioc" or order.status == "new"), (tif, order.status)

    def test_an_order_type_or_time_in_force_it_does_not_take_is_refused_before_any_broker_call(self, harness):
        caps = self.capabilities(harness)
        refused = [{"order_type": t} for t in sorted(ALL_ORDER_TYPES - caps.order_types)]
        refused += [{"time_in_force": t} for t in sorted(ALL_TIMES_IN_FORCE - caps.times_in_force)]
        expected = "unsupported_by_broker"
        if not refused:
            # It takes every type the protocol names: what it cannot take is anything else.
            refused, expected = [{"order_type": "trailing_stop"}, {"time_in_force": "gtd"}], "validation_error"
        harness.calls.clear()
        for change in refused:
            body = {"symbol": harness.symbol, "side": "buy", "order_type": "limit", "qty": "1", "time_in_force": self.tif(harness)}
            body.update(change)
            if body["order_type"] in ("limit", "stop_limit"):
                body["price"] = str(self.on_tick(harness, harness.price * Decimal("0.8")))
            if body["order_type"] in ("stop", "stop_limit"):
                body["stop_price"] = str(self.on_tick(harness, harness.price * Decimal("1.2")))
            with pytest.raises(DomainError) as refusal:
                self.run(harness, "send_order", body)
            assert refusal.value.code == expected, (change, refusal.value.code, refusal.value.fields)
            assert any(name.endswith(tuple(change)) for name in refusal.value.fields), refusal.value.fields
        assert "place_order" not in harness.calls
        assert not Order.objects.filter(account=harness.account).exists()

    # --- place, status, amend, cancel ----------------------------------------------------------------

    def test_a_placed_order_rests_and_the_broker_lists_it(self, harness):
        order = self.resting(harness)
        assert order.status == "new" and order.broker_order_id
        broker = self.broker(harness)
        assert order.broker_order_id in {o.broker_order_id for o in broker.open_orders()}
        view = broker.get_order(broker_order_id=order.broker_order_id, symbol=order.symbol)
        assert view is not None and (view.status, view.side, Decimal(view.qty)) == ("new", "buy", order.qty)

    def test_status_by_client_order_id_or_by_the_orders_attributes(self, harness):
        """How the sweeper and reconciliation find an order whose answer was
        lost: by client order id where the broker keeps them, else by symbol,
        side, quantity and time among the broker's recent orders."""
        broker = self.broker(harness)
        order = self.resting(harness)
        if broker.capabilities.supports_client_order_id:
            view = broker.get_order(client_order_id=order.client_order_id, symbol=order.symbol)
            assert view is not None and (view.client_order_id, view.broker_order_id) == (order.client_order_id, order.broker_order_id)
            assert broker.get_order(client_order_id="never-sent-1", symbol=order.symbol) is None
            return
        # No client order ids: the broker cannot answer by ours, and the OMS's
        # look-up of the order as if its answer had been lost finds it anyway.
        assert broker.get_order(client_order_id=order.client_order_id, symbol=order.symbol) is None
        lost = Order.objects.get(pk=order.pk)
        lost.broker_order_id = ""  # never saved: the order as the sweeper sees one whose answer was lost
        view = order_lookup_at_broker(broker, lost)
        assert view is not None and view.broker_order_id == order.broker_order_id
        assert (view.symbol, view.side, Decimal(view.qty)) == (order.symbol, order.side, order.qty)

    def test_amend_applies_at_the_broker_or_is_refused_before_any_call(self, harness):
        # A lower quantity and a new price: what every broker that changes
        # orders can do (KIS never raises an order's quantity).
        order = self.resting(harness, qty="3")
        if not self.capabilities(harness).supports_modify:
            # Cancel and send again is the trader's way; the OMS never asks.
            harness.calls.clear()
            with pytest.raises(DomainError) as refusal:
                self.run(harness, "change_order", {"order_id": order.pk, "qty": "2"})
            assert refusal.value.code == "not_supported"
            assert "modify_order" not in harness.calls
            order.refresh_from_db()
            assert (order.status, order.qty) == ("new", Decimal(3))
            return
        new_price = self.on_tick(harness, harness.price * Decimal("0.7"))
        changed = self.run(harness, "change_order", {"order_id": order.pk, "price": str(new_price), "qty": "2"})
        assert changed is not None
        changed.refresh_from_db()
        assert (changed.status, changed.price, changed.qty) == ("new", new_price, Decimal(2))
        view = self.broker(harness).get_order(broker_order_id=changed.broker_order_id, symbol=order.symbol)
        assert view is not None and (Decimal(view.price), Decimal(view.qty)) == (new_price, Decimal(2))

    def test_cancel_cancels_at_the_broker(self, harness):
        order = self.resting(harness)
        canceled = self.run(harness, "cancel_order", {"order_id": order.pk})
        assert canceled is not None
        canceled.refresh_from_db()
        assert canceled.status == "canceled"
        broker = self.broker(harness)
        assert order.broker_order_id not in {o.broker_order_id for o in broker.open_orders()}
        view = broker.get_order(broker_order_id=order.broker_order_id, symbol=order.symbol)
        assert view is not None and view.status == "canceled"

    # --- fills, positions, funds ----------------------------------------------------------------------

    def test_a_fill_is_booked_exactly_once(self, harness):
        started = timezone.now() - timedelta(minutes=1)
        order = self.marketable(harness, qty="2")
        order.refresh_from_db()
        assert (order.status, order.filled_qty) == ("filled", Decimal(2))
        broker = self.broker(harness)
        deals = Deal.objects.filter(account=harness.account)
        assert sum((d.qty for d in deals), Decimal(0)) == Decimal(2)
        booked = deals.count()
        if broker.capabilities.cumulative_fills:
            # No trade ids: the broker reports the order's cumulative progress.
            assert broker.fills_since(started) == []
            view = broker.get_order(broker_order_id=order.broker_order_id, symbol=order.symbol)
            assert view is not None and (view.status, Decimal(view.filled_qty)) == ("filled", Decimal(2))
            registry.deliver_order_updates(harness.account.pk, [view, view])  # the same progress reported twice
        else:
            fills = [f for f in broker.fills_since(started) if f.broker_order_id == order.broker_order_id]
            assert sum((f.qty for f in fills), Decimal(0)) == Decimal(2)
            assert len({f.broker_trade_id for f in fills}) == len(fills)
            registry.deliver_fills(harness.account.pk, fills)  # a replayed delivery
        assert Deal.objects.filter(account=harness.account).count() == booked
        summary = account_reconcile(account=harness.account)  # reconciliation sees the same fills
        assert summary.ok, summary.error
        assert (summary.fills_booked, Deal.objects.filter(account=harness.account).count()) == (0, booked)

    def held(self, harness: BrokerHarness) -> dict[str, Decimal]:
        """What the broker says the account holds: its positions, else (cash
        equities, as KIS) its holdings."""
        broker = self.broker(harness)
        held = {p.symbol: Decimal(p.qty) for p in broker.positions() if p.qty}
        for holding in broker.holdings():
            if holding.qty and holding.symbol not in held:
                held[holding.symbol] = Decimal(holding.qty)
        return held

    def test_positions_agree_with_the_oms(self, harness):
        self.marketable(harness, qty="2")
        assert self.held(harness).get(harness.symbol) == Decimal(2)
        ours = Position.objects.get(account=harness.account, symbol=harness.symbol, status="open")
        assert (ours.side, ours.qty) == (PositionSide.LONG, Decimal(2))
        self.marketable(harness, qty="2", side="sell")
        assert harness.symbol not in self.held(harness)

    def test_close_position_closes_with_an_order_the_broker_takes(self, harness):
        bought = self.marketable(harness, qty="2")
        position = bought.deals.get().position
        close = self.run(harness, "close_position", {"position_id": position.pk})
        assert close is not None
        close.refresh_from_db()
        assert close.time_in_force in self.capabilities(harness).times_in_force
        assert (close.status, close.reduce_only, close.side) == ("filled", True, "sell"), close.status_message
        position.refresh_from_db()
        assert (position.status, position.qty) == ("closed", Decimal(0))

    def test_funds_answer_balances_per_currency_and_consistent_base_totals(self, harness):
        funds = self.broker(harness).funds()
        assert funds.currency == harness.account.base_currency
        currencies = [b.currency for b in funds.balances]
        assert currencies and len(set(currencies)) == len(currencies)
        assert funds.rates.get(funds.currency) == Decimal(1)
        assert all(c in funds.rates for c in currencies), (currencies, dict(funds.rates))
        converted = sum((b.cash * funds.rates[b.currency] for b in funds.balances), Decimal(0))
        assert abs(converted - funds.cash) <= Decimal("0.01"), (converted, funds.cash)
        assert funds.margin_used >= 0 and funds.margin_available <= funds.equity
        assert funds.buying_power is None or funds.buying_power <= funds.equity

    # --- each error the broker can produce, through the OMS ----------------------------------------------

    def test_each_error_gives_the_right_order_outcome(self, harness, kind):
        assert kind in harness.error_kinds, "the class's error_kinds and its harness disagree"
        with harness.inject(kind):
            order = self.marketable(harness, settle=False)
        order.refresh_from_db()
        sends = harness.calls.count("place_order")
        assert sends == 1
        if kind == "rejected":
            assert order.status == "rejected" and order.status_message
            assert not Deal.objects.filter(account=harness.account).exists()
            return
        if kind == "timeout":
            # It may have reached the broker: never sent again; reconciliation settles it.
            assert order.status == "unknown"
            orders_sweep(now=_later())
            summary = account_reconcile(account=harness.account, now=_after_grace())
            assert summary.ok, summary.error
            order.refresh_from_db()
            assert order.status in ("rejected", "new", "filled", "canceled"), order.status
            assert harness.calls.count("place_order") == sends
            return
        # Surely not sent (unavailable, auth expired, rate-limited): the claim is
        # released and the sweeper sends it once the broker answers again.
        assert (order.status, order.sent_at) == ("pending_new", None)
        summary = orders_sweep(now=_later())
        harness.settle()
        order.refresh_from_db()
        assert summary.submitted == [order.pk] and order.status == "filled"
        assert harness.calls.count("place_order") == sends + 1
        at_broker = self.broker(harness).orders_since(timezone.now() - timedelta(hours=1))
        assert order.broker_order_id and [o.broker_order_id for o in at_broker].count(order.broker_order_id) == 1
