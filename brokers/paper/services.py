"""Every write of the paper venue.

Each change of one account's book runs the same way: in one transaction,
lock the PaperAccount row (``select_for_update``; created lazily with
PAPER_STARTING_CASH and PAPER_STARTING_BALANCES), load the book into a fresh
engine, give it the FX rates of its currencies (marketdata.fx), change it,
save what changed, commit. Orders come from web and Celery processes while quotes
match in the marketdata process: the row lock puts them in one order, and
loading under the lock means no process ever works on a stale book.

Fills, and order changes the venue made on its own (expiry, IOC or
reduce-only remainders canceled while matching quotes), reach the OMS
through brokers.registry only after the commit (``transaction.on_commit``):
a rolled-back match never reports a fill. Answers to requests (place,
cancel, modify) go back in the adapter's ack instead.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from brokers.base import Fill, OrderRequest, OrderStatus
from brokers.models import BrokerAccount, BrokerKind
from brokers.paper import wire
from brokers.paper.book import DEPOSIT, Event, FillEvent, LedgerEntry, Order, OrderRejected, StatusEvent
from brokers.paper.engine import PaperEngine
from brokers.paper.ledger import LedgerRefused
from brokers.paper.models import PaperAccount, PaperBalance, PaperLedgerEntry, PaperOrder
from brokers.paper.store import book_keep, book_load, book_save, order_from_row, to_datetime
from brokers.registry import deliver_fills, deliver_order_updates
from core.exceptions import InvalidInput
from marketdata.fx import fx_rates
from marketdata.models import Instrument
from marketdata.quotes import quote_get, quotes_get
from marketdata.selectors import instrument_tradable
from marketdata.types import Quote

logger = logging.getLogger(__name__)


def starting_balances(base_currency: str) -> dict[str, Decimal]:
    """A new book's balances: PAPER_STARTING_CASH in the base currency plus
    PAPER_STARTING_BALANCES (a base currency named there adds to it)."""
    balances = {base_currency: Decimal(str(settings.PAPER_STARTING_CASH))}
    for currency, amount in settings.PAPER_STARTING_BALANCES.items():
        balances[currency] = balances.get(currency, Decimal(0)) + Decimal(amount)
    return balances


def paper_account_ensure(*, account_id: int) -> PaperAccount:
    """The account's paper book, created with its starting balances (each a
    ``deposit`` ledger entry) when missing."""
    base = BrokerAccount.objects.filter(pk=account_id).values_list("base_currency", flat=True).get()
    balances = starting_balances(base)
    rates = {**fx_rates(set(balances) - {base}, base, allow_stale=True), base: Decimal(1)} if len(balances) > 1 else {base: Decimal(1)}
    with transaction.atomic():
        # get_or_create survives a concurrent creation (unique pk): it reads the winner's row.
        paper, created = PaperAccount.objects.get_or_create(
            account_id=account_id, defaults={"cash": balances[base], "starting_cash": balances[base]}
        )
        if created:
            stamp = to_datetime(time.time())
            PaperBalance.objects.bulk_create(
                PaperBalance(account=paper, currency=c, amount=a, updated_at=stamp) for c, a in balances.items()
            )
            PaperLedgerEntry.objects.bulk_create(
                PaperLedgerEntry(
                    account=paper,
                    currency=c,
                    amount=a,
                    kind=DEPOSIT,
                    rate=rates.get(c),
                    note="Starting balance",
                    created_at=stamp,
                )
                for c, a in balances.items()
                if a
            )
    return paper


def paper_account_lock(*, account_id: int) -> PaperAccount:
    """The account's paper book row, locked until the surrounding transaction
    ends (created first when missing). Call inside ``transaction.atomic()``."""
    # The BrokerAccount (base currency) comes along; only the book row is locked.
    locking = PaperAccount.objects.select_related("account").select_for_update(of=("self",))
    paper = locking.filter(pk=account_id).first()
    if paper is None:
        paper_account_ensure(account_id=account_id)
        paper = locking.get(pk=account_id)
    return paper


def engine_rates_refresh(engine: PaperEngine, *, allow_stale: bool = False, also: Iterable[str] = (), now: float | None = None) -> None:
    """Give the book the FX rates of every currency it holds or trades in (and
    ``also``; no lookup when they are all the base currency). Trading uses
    fresh rates only; a valuation may take the last known ones."""
    others = (engine.currencies() | set(also)) - {engine.base_currency}
    if others:
        engine.set_rates(fx_rates(others, engine.base_currency, allow_stale=allow_stale, now=now))


def _refresh_marks(engine: PaperEngine) -> None:
    # Margin checks value open positions at the latest quotes, not at the last
    # quote this book happened to match on.
    held = [symbol for symbol, p in engine.positions.items() if p.qty]
    if held:
        engine.set_marks({symbol: q.last for symbol, q in quotes_get(held).items()})


def _deliver(account_id: int, fills: list[Fill], updates: list[OrderStatus]) -> None:
    # Fills first: the OMS books them before it hears that the rest is canceled.
    deliver_fills(account_id, fills)
    deliver_order_updates(account_id, updates)


def _report_after_commit(account_id: int, engine: PaperEngine, events: Iterable[Event]) -> None:
    events = list(events)
    fills = [wire.fill_of_event(e) for e in events if isinstance(e, FillEvent)]
    venue_ids = dict.fromkeys(e.broker_order_id for e in events if isinstance(e, StatusEvent) and e.cause == "venue")
    updates = [wire.order_status(engine.orders[order_id]) for order_id in venue_ids]
    if fills or updates:

        def deliver() -> None:  # a function, not a partial: Django logs robust failures by __qualname__
            _deliver(account_id, fills, updates)

        # robust: a failing sink is logged; the commit stands, and the OMS
        # reconciles through fills_since/orders_since.
        transaction.on_commit(deliver, robust=True)


def _run(
    paper: PaperAccount,
    now: float,
    operation: Callable[[PaperEngine], list[Event]],
    *,
    orders_of: Collection[str] = (),
    expiring_by: float | None = None,
    order_ids: Collection[str] | None = None,
    symbols: Iterable[str] = (),
) -> PaperEngine:
    """Load the locked book with the working orders of ``orders_of`` (and
    those due to expire by ``expiring_by``, and ``order_ids``; the others
    count only by their reservations and remaining qty, see
    store.book_load), apply ``operation``, save, report after commit.
    ``operation`` must touch no other order. Callers hold the lock inside
    their transaction; an exception rolls all back."""
    book = book_load(paper, symbols=symbols, orders_of=orders_of, expiring_by=expiring_by, order_ids=order_ids)
    engine_rates_refresh(book.engine, now=now)
    events = operation(book.engine)
    book.engine.cover_debits(now)
    book_save(book, now)
    book_keep(paper, book.engine)  # before the report: the funds after its fills read it
    _report_after_commit(paper.pk, book.engine, events)
    return book.engine


def _instrument_refusal(symbol: str) -> str | None:
    """Why the venue does not trade ``symbol``, or None (the active
    instrument comes from the process cache, without a query)."""
    if instrument_tradable(symbol=symbol) is not None:
        return None
    if Instrument.objects.filter(symbol=symbol).exists():
        return f"{symbol} is not tradable (inactive)."
    return f"Unknown symbol {symbol!r}."


def paper_order_place(*, account_id: int, request: OrderRequest, now: float | None = None) -> Order:
    """Accept (or reject) a new order at the paper venue and match it at once
    against the latest quote. Returns the order as the venue holds it (status
    ``rejected`` with the reason when refused: the refusal is recorded, as a
    venue does). A client order id used before returns that order unchanged.
    Raises OrderRejected for an unknown or inactive symbol."""
    [placed] = paper_orders_place(account_id=account_id, requests=[request], now=now)
    if isinstance(placed, OrderRejected):
        raise placed
    return placed


def paper_orders_place(*, account_id: int, requests: Sequence[OrderRequest], now: float | None = None) -> list[Order | OrderRejected]:
    """``paper_order_place`` for several orders of one account, in the given
    order, in one transaction: one lock, one load of the book (none of its
    resting orders: a new order matches against the quote only), one save.
    For each request the order as the venue holds it, or the OrderRejected
    an unknown or inactive symbol gets (nothing recorded for that one)."""
    now = time.time() if now is None else now
    symbols = sorted({r.symbol for r in requests})
    refusals = {symbol: reason for symbol in symbols if (reason := _instrument_refusal(symbol)) is not None}
    tradable = [symbol for symbol in symbols if symbol not in refusals]
    results: list[Order | OrderRejected | None] = [None] * len(requests)
    placed: dict[int, str] = {}

    def submit(engine: PaperEngine) -> list[Event]:
        _refresh_marks(engine)
        quotes = quotes_get(tradable)
        events: list[Event] = []
        for i, request in enumerate(requests):
            if results[i] is not None:
                continue
            spec = engine.specs[request.symbol]
            submitted = engine.submit(request, quotes.get(request.symbol), spec, now)
            placed[i] = submitted[-1].broker_order_id
            events.extend(submitted)
        return events

    with transaction.atomic():
        paper = paper_account_lock(account_id=account_id)
        for i, request in enumerate(requests):
            if request.symbol in refusals:
                results[i] = OrderRejected(refusals[request.symbol])
        named = {r.client_order_id for i, r in enumerate(requests) if r.client_order_id and results[i] is None}
        if named:
            # Idempotent at the venue: finished orders are not in the loaded book, so ask the table.
            existing = {row.client_order_id: row for row in PaperOrder.objects.filter(account=paper, client_order_id__in=named)}
            for i, request in enumerate(requests):
                row = existing.get(request.client_order_id) if results[i] is None and request.client_order_id else None
                if row is not None:
                    results[i] = order_from_row(row)
        if any(result is None for result in results):
            engine = _run(paper, now, submit, order_ids=(), symbols=tradable)
            for i, broker_order_id in placed.items():
                results[i] = engine.orders[broker_order_id]
    return [result for result in results if result is not None]


def paper_order_cancel(*, account_id: int, broker_order_id: str, now: float | None = None) -> Order:
    """Cancel a working order. Raises OrderRejected for an unknown or final one."""
    now = time.time() if now is None else now
    with transaction.atomic():
        paper = paper_account_lock(account_id=account_id)
        _working_row(paper, broker_order_id, "canceled")
        engine = _run(paper, now, lambda e: e.cancel(broker_order_id, now), order_ids=[broker_order_id])
    return engine.orders[broker_order_id]


def paper_order_modify(
    *,
    account_id: int,
    broker_order_id: str,
    qty: Decimal | None = None,
    price: Decimal | None = None,
    stop_price: Decimal | None = None,
    now: float | None = None,
) -> Order:
    """Change qty/price/stop_price of a working order and match it at once
    against the latest quote. Raises OrderRejected (nothing changes) when the
    order is unknown or final or the change is not allowed."""
    now = time.time() if now is None else now
    with transaction.atomic():
        paper = paper_account_lock(account_id=account_id)
        row = _working_row(paper, broker_order_id, "modified")
        quote = quote_get(row.symbol)

        def modify(engine: PaperEngine) -> list[Event]:
            _refresh_marks(engine)
            return engine.modify(broker_order_id, qty=qty, price=price, stop_price=stop_price, quote=quote, now=now)

        engine = _run(paper, now, modify, order_ids=[broker_order_id], symbols=[row.symbol])
    return engine.orders[broker_order_id]


def _working_row(paper: PaperAccount, broker_order_id: str, verb: str) -> PaperOrder:
    row = PaperOrder.objects.filter(account=paper, broker_order_id=broker_order_id).first()
    if row is None:
        raise OrderRejected(f"Unknown order {broker_order_id}.")
    if not row.working:
        raise OrderRejected(f"Order {broker_order_id} is {row.status}: it cannot be {verb}.")
    return row


def paper_quotes_match(quotes: list[Quote], *, now: float | None = None) -> int:
    """The quote listener: match every account with working orders on the
    batch's symbols, and expire day orders whose session has closed. One
    indexed query when nothing is working; each account in its own
    transaction, and one account's failure never stops the others. Returns
    how many accounts were processed."""
    now = time.time() if now is None else now
    due = Q(expires_at__lte=to_datetime(now))
    symbols = {q.symbol for q in quotes}
    account_ids = (
        PaperOrder.objects.filter(working=True)
        .filter(due | Q(symbol__in=symbols) if symbols else due)
        .order_by()  # no Meta.ordering: its seq would join the DISTINCT, one row per order
        .values_list("account_id", flat=True)
        .distinct()
    )
    processed = 0
    for account_id in sorted(account_ids):
        try:
            with transaction.atomic():
                # Only the batch's symbols match and only due orders expire.
                _run(
                    paper_account_lock(account_id=account_id),
                    now,
                    partial(_match_account, quotes=quotes, now=now),
                    orders_of=symbols,
                    expiring_by=now,
                )
            processed += 1
        except Exception:
            logger.exception("paper matching failed for account %s", account_id)
    return processed


def paper_on_quotes(quotes: list[Quote]) -> None:
    """The listener registered with the simulator: runs in its loop's worker
    thread after each step's quotes are stored."""
    paper_quotes_match(quotes)


def _match_account(engine: PaperEngine, *, quotes: list[Quote], now: float) -> list[Event]:
    events = engine.expire_day_orders(now)
    working = engine.working_symbols()
    for quote in quotes:
        if quote.symbol in working:
            events.extend(engine.on_quote(quote, now))
    return events


def paper_day_orders_expire(*, now: float | None = None) -> int:
    """Expire due day orders of every account (the listener does this on each
    batch; this is for callers without quotes)."""
    return paper_quotes_match([], now=now)


def paper_ledger_adjust(*, account_id: int, currency: str, amount: Decimal, note: str = "", now: float | None = None) -> LedgerEntry:
    """Deposit (``amount`` > 0) or withdraw (< 0) ``currency`` on a paper
    account's ledger, booked as one ``deposit``/``withdrawal`` entry under the
    book's lock. Raises InvalidInput for a bad currency or amount and for a
    withdrawal that would take the balance below zero (nothing changes)."""
    now = time.time() if now is None else now
    code = (currency or "").strip().upper()
    if not re.fullmatch(r"[A-Z][A-Z0-9]{1,9}", code):
        raise InvalidInput("A currency is 2 to 10 letters or digits, e.g. KRW.", fields={"currency": ["Not a currency code."]})
    if not BrokerAccount.objects.filter(pk=account_id, kind=BrokerKind.PAPER).exists():
        raise InvalidInput("Only a paper account's ledger can be adjusted.", fields={"account_id": ["Not a paper account."]})
    with transaction.atomic():
        paper = paper_account_lock(account_id=account_id)
        book = book_load(paper, orders_of=())
        engine_rates_refresh(book.engine, allow_stale=True, also=[code])
        try:
            entry = book.engine.adjust(code, amount, now, note=note[:200])
        except LedgerRefused as exc:
            raise InvalidInput(exc.message, fields={"amount": [exc.message]}) from None
        book_save(book, now)
    return entry
