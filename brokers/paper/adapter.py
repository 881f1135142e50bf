"""PaperBroker: the Broker protocol over the paper venue (brokers.paper.services
for changes, brokers.paper.selectors for reads). The venue is local, so every
call is answered at once; only a failing database makes it unavailable (or,
during a change, leaves the outcome unknown)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal

from django.db import DatabaseError

from brokers.base import (
    Balance,
    BrokerError,
    BrokerPosition,
    BrokerRejected,
    BrokerTimeout,
    BrokerUnavailable,
    Capabilities,
    Fill,
    Funds,
    Holding,
    OrderAck,
    OrderRequest,
    OrderStatus,
)
from brokers.models import BrokerAccount, BrokerKind, PositionMode
from brokers.paper import selectors, services, wire
from brokers.paper.book import REJECTED, OrderRejected

logger = logging.getLogger(__name__)


@contextmanager
def _venue(action: str, *, changes: bool) -> Iterator[None]:
    """The venue's refusals as BrokerRejected; a database failure as
    BrokerTimeout when it may have hit the commit of a change (the outcome
    is unknown: the OMS must ask, never resend), else BrokerUnavailable."""
    try:
        yield
    except OrderRejected as exc:
        raise BrokerRejected(exc.message) from exc
    except DatabaseError as exc:
        logger.exception("paper venue: %s failed in the database", action)
        error = BrokerTimeout if changes else BrokerUnavailable
        raise error(f"The paper venue's database failed during {action}.") from exc


class PaperBroker:
    """The paper venue for one BrokerAccount. ``clock`` (unix seconds) is
    injectable so tests can place orders at a chosen time."""

    def __init__(self, account: BrokerAccount, *, clock: Callable[[], float] = time.time) -> None:
        if account.kind != BrokerKind.PAPER:
            raise ValueError(f"PaperBroker serves paper accounts, not {account.kind}")
        self.account = account
        self.clock = clock
        # What the venue really does (the Broker contract suite checks each):
        # every order type and time in force, changes, client order ids,
        # reduce-only; no broker-specific order fields.
        self.capabilities = Capabilities(
            supports_modify=True,
            supports_client_order_id=True,
            supports_reduce_only=True,
            hedging=account.position_mode == PositionMode.HEDGING,
            order_types=frozenset({"market", "limit", "stop", "stop_limit"}),
            times_in_force=frozenset({"day", "gtc", "ioc"}),
            extra_order_fields=frozenset(),
            any_instrument=True,
        )

    # --- orders -------------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> OrderAck:
        """Send a new order; the ack carries the state after the immediate
        match (new, partially_filled, filled, or canceled for an IOC
        remainder). Its fills are also delivered through the fill sink after
        commit. A client order id used before answers that order's ack.
        Raises BrokerRejected with the venue's reason when refused."""
        if not self.account.trading_enabled:
            raise BrokerRejected("Trading is disabled for this account.")
        with _venue("place_order", changes=True):
            order = services.paper_order_place(account_id=self.account.pk, request=request, now=self.clock())
        ack = wire.order_ack(order)
        if order.status == REJECTED:
            raise BrokerRejected(order.message, raw={"broker_order_id": order.broker_order_id, **ack.raw})
        return ack

    def place_orders(self, requests: list[OrderRequest]) -> list[OrderAck | BrokerError]:
        """Send several orders in one unit of work at the venue (one lock,
        one load, one save; ``brokers.base.place_orders``): for each, its ack
        or the BrokerRejected ``place_order`` would have raised. A database
        failure raises for the whole batch (BrokerTimeout: the OMS asks)."""
        if not self.account.trading_enabled:
            return [BrokerRejected("Trading is disabled for this account.") for _ in requests]
        with _venue("place_orders", changes=True):
            placed = services.paper_orders_place(account_id=self.account.pk, requests=requests, now=self.clock())
        answers: list[OrderAck | BrokerError] = []
        for order in placed:
            if isinstance(order, OrderRejected):
                answers.append(BrokerRejected(order.message))
                continue
            ack = wire.order_ack(order)
            if order.status == REJECTED:
                answers.append(BrokerRejected(order.message, raw={"broker_order_id": order.broker_order_id, **ack.raw}))
            else:
                answers.append(ack)
        return answers

    def cancel_order(self, *, broker_order_id: str, symbol: str) -> OrderAck:
        """Cancel at once: the ack says ``canceled``. A final or unknown order
        raises BrokerRejected."""
        with _venue("cancel_order", changes=True):
            order = services.paper_order_cancel(account_id=self.account.pk, broker_order_id=broker_order_id, now=self.clock())
        return wire.order_ack(order)

    def modify_order(
        self, *, broker_order_id: str, symbol: str, qty: Decimal | None, price: Decimal | None, stop_price: Decimal | None
    ) -> OrderAck:
        """Change qty (not below the filled qty), price or stop price of a
        working order; the ack carries its state after matching at once."""
        with _venue("modify_order", changes=True):
            order = services.paper_order_modify(
                account_id=self.account.pk, broker_order_id=broker_order_id, qty=qty, price=price, stop_price=stop_price, now=self.clock()
            )
        return wire.order_ack(order)

    def get_order(
        self, *, client_order_id: str | None = None, broker_order_id: str | None = None, symbol: str | None = None
    ) -> OrderStatus | None:
        """The venue's view of one order (rejected ones included), or None."""
        with _venue("get_order", changes=False):
            order = selectors.paper_order_get(account_id=self.account.pk, client_order_id=client_order_id, broker_order_id=broker_order_id)
        return None if order is None else wire.order_status(order)

    def open_orders(self) -> list[OrderStatus]:
        """Working orders (new, partially filled) in the order they were sent."""
        with _venue("open_orders", changes=False):
            return [wire.order_status(o) for o in selectors.paper_open_orders(account_id=self.account.pk)]

    def orders_since(self, since: datetime) -> list[OrderStatus]:
        """Orders created or changed at or after ``since``."""
        with _venue("orders_since", changes=False):
            return [wire.order_status(o) for o in selectors.paper_orders_since(account_id=self.account.pk, since=since)]

    def fills_since(self, since: datetime) -> list[Fill]:
        """Fills executed at or after ``since``, in time order."""
        with _venue("fills_since", changes=False):
            return [wire.fill_of_row(r) for r in selectors.paper_fills_since(account_id=self.account.pk, since=since)]

    # --- the account ------------------------------------------------------------------------

    def positions(self) -> list[BrokerPosition]:
        """Open positions netted per symbol (the venue keeps one per symbol,
        also for hedging accounts), unrealized P&L at the latest quote."""
        with _venue("positions", changes=False):
            rows = selectors.paper_positions(account_id=self.account.pk)
        return [
            BrokerPosition(
                symbol=p.symbol,
                qty=wire.plain(p.qty),
                avg_price=wire.plain(p.avg_price),
                unrealized_pnl=None if p.unrealized_pnl is None else wire.plain(p.unrealized_pnl),
            )
            for p in rows
        ]

    def holdings(self) -> list[Holding]:
        """Long positions in cash products (stock, crypto, option, index)."""
        with _venue("holdings", changes=False):
            rows = selectors.paper_holdings(account_id=self.account.pk)
        return [
            Holding(
                symbol=p.symbol,
                qty=wire.plain(p.qty),
                avg_price=wire.plain(p.avg_price),
                last_price=None if p.last_price is None else wire.plain(p.last_price),
            )
            for p in rows
        ]

    def funds(self) -> Funds:
        """Balances per currency; in the base currency: cash (the balances
        converted), margin used (positions plus working orders'
        reservations), margin available and buying power (equity less both),
        equity at the latest quotes; the rates used."""
        with _venue("funds", changes=False):
            view = selectors.paper_funds(account_id=self.account.pk)
        return Funds(
            currency=view.base_currency,
            cash=wire.plain(view.cash),
            margin_used=wire.plain(view.margin_used),
            margin_available=wire.plain(view.buying_power),
            equity=wire.plain(view.equity),
            balances=tuple(Balance(currency=c, cash=wire.plain(amount)) for c, amount in view.balances.items()),
            buying_power=wire.plain(view.buying_power),
            rates={c: wire.plain(rate) for c, rate in view.rates.items()},
            raw={
                "unvalued_currencies": list(view.unvalued),
                "venue": "paper",
                "position_margin": str(wire.plain(view.position_margin)),
                "order_margin": str(wire.plain(view.order_margin)),
                "unrealized_pnl": str(wire.plain(view.unrealized_pnl)),
                "realized_pnl": str(wire.plain(view.realized_pnl)),
                "fees_paid": str(wire.plain(view.fees_paid)),
            },
        )


def paper_broker_factory(account: BrokerAccount) -> PaperBroker:
    return PaperBroker(account)
