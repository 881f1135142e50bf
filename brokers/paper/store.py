"""Between the paper models and the matching core: load an account's book
into a PaperEngine, and write back exactly what the engine changed.

Only working orders are loaded (finished ones never change again), and for
a change of one symbol's orders only that symbol's (see book_load), with
the positions, the balances, the market states and the instruments' terms.
Callers hold the PaperAccount row lock (services.py) from load to save.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from brokers.paper.book import WORKING, ZERO, Changes, EngineConfig, InstrumentSpec, MarketState, Order, Position
from brokers.paper.engine import PaperEngine
from brokers.paper.models import PaperAccount, PaperBalance, PaperFill, PaperLedgerEntry, PaperOrder, PaperPosition
from marketdata.models import Instrument
from marketdata.selectors import instruments_cached

_ORDER_UPDATE_FIELDS = [
    "qty",
    "price",
    "stop_price",
    "status",
    "working",
    "filled_qty",
    "avg_fill_price",
    "triggered",
    "reserved",
    "message",
    "updated_at",
]


def engine_config() -> EngineConfig:
    """The venue's terms, from settings."""
    return EngineConfig(
        fee_bps=Decimal(str(settings.PAPER_FEE_BPS)),
        min_fee=Decimal(str(settings.PAPER_MIN_FEE)),
        slippage_bps=Decimal(str(settings.PAPER_SLIPPAGE_BPS)),
        stale_seconds=float(settings.QUOTE_STALE_SECONDS),
        margin_rates={kind: Decimal(str(rate)) for kind, rate in settings.PAPER_MARGIN_RATES.items()},
        fx_mode=settings.PAPER_FX_MODE,
    )


def instrument_spec(instrument: Instrument) -> InstrumentSpec:
    return InstrumentSpec(
        symbol=instrument.symbol,
        type=instrument.type,
        tick_size=instrument.tick_size,
        lot_size=instrument.lot_size,
        multiplier=instrument.multiplier,
        session=instrument.session,
        timezone=instrument.timezone,
        currency=instrument.currency,
        venue=instrument.venue,
    )


def specs_for(symbols: Iterable[str]) -> dict[str, InstrumentSpec]:
    wanted = set(symbols)
    if not wanted:
        return {}
    # From the process's instrument cache: a book's load asks for none once seen.
    return {symbol: instrument_spec(i) for symbol, i in instruments_cached(symbols=wanted).items()}


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def market_to_json(state: MarketState) -> dict[str, Any]:
    return {
        "time": state.time,
        "last": str(state.last),
        "bid": _str(state.bid),
        "ask": _str(state.ask),
        "bid_size": _str(state.bid_size),
        "ask_size": _str(state.ask_size),
        "bid_left": _str(state.bid_left),
        "ask_left": _str(state.ask_left),
    }


def market_from_json(data: dict[str, Any]) -> MarketState:
    return MarketState(
        time=float(data["time"]),
        last=Decimal(data["last"]),
        bid=_dec(data.get("bid")),
        ask=_dec(data.get("ask")),
        bid_size=_dec(data.get("bid_size")),
        ask_size=_dec(data.get("ask_size")),
        bid_left=_dec(data.get("bid_left")),
        ask_left=_dec(data.get("ask_left")),
    )


def order_from_row(row: PaperOrder) -> Order:
    return Order(
        no=row.seq,
        broker_order_id=row.broker_order_id,
        client_order_id=row.client_order_id,
        symbol=row.symbol,
        side=row.side,
        order_type=row.order_type,
        qty=row.qty,
        price=row.price,
        stop_price=row.stop_price,
        time_in_force=row.time_in_force,
        reduce_only=row.reduce_only,
        position_ref=row.position_ref or None,
        status=row.status,
        filled_qty=row.filled_qty,
        avg_fill_price=row.avg_fill_price,
        triggered=row.triggered,
        reserved=row.reserved,
        expires_at=row.expires_at.timestamp() if row.expires_at else None,
        created_at=row.created_at.timestamp(),
        updated_at=row.updated_at.timestamp(),
        message=row.message,
    )


def _order_row(order: Order, account: PaperAccount, pk: int | None) -> PaperOrder:
    return PaperOrder(
        pk=pk,
        account=account,
        seq=order.no,
        broker_order_id=order.broker_order_id,
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        order_type=order.order_type,
        qty=order.qty,
        price=order.price,
        stop_price=order.stop_price,
        time_in_force=order.time_in_force,
        reduce_only=order.reduce_only,
        position_ref=order.position_ref or "",
        status=order.status,
        working=order.status in WORKING,
        filled_qty=order.filled_qty,
        avg_fill_price=order.avg_fill_price,
        triggered=order.triggered,
        reserved=order.reserved,
        expires_at=to_datetime(order.expires_at) if order.expires_at is not None else None,
        message=order.message,
        created_at=to_datetime(order.created_at),
        updated_at=to_datetime(order.updated_at),
    )


# (symbol, side) -> [reserved, remaining qty] summed over the working orders.
Totals = dict[tuple[str, str], list[Decimal]]


def totals_from_json(data: dict[str, Any] | None) -> Totals:
    return {(symbol, side): [Decimal(r), Decimal(q)] for symbol, sides in (data or {}).items() for side, (r, q) in sides.items()}


def totals_to_json(totals: Totals) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for (symbol, side), (reserved, remaining) in sorted(totals.items()):
        if reserved or remaining:  # nothing working there any more
            data.setdefault(symbol, {})[side] = [str(reserved), str(remaining)]
    return data


@dataclass
class LoadedBook:
    paper: PaperAccount
    engine: PaperEngine
    order_pks: dict[str, int] = field(default_factory=dict)
    position_pks: dict[str, int] = field(default_factory=dict)
    totals: Totals = field(default_factory=dict)  # PaperAccount.working_totals, kept current
    # What each loaded working order adds to the totals: (symbol, side, reserved, remaining).
    counted: dict[str, tuple[str, str, Decimal, Decimal]] = field(default_factory=dict)


def book_load(
    paper: PaperAccount,
    *,
    symbols: Iterable[str] = (),
    orders_of: Collection[str] | None = None,
    expiring_by: float | None = None,
    order_ids: Collection[str] | None = None,
) -> LoadedBook:
    """The account's book in a fresh engine: working orders, positions, market
    states, and the terms of their instruments and of ``symbols``.

    ``orders_of`` (None: all) loads only the working orders of these symbols,
    plus, with ``expiring_by``, every working order due to expire by then, so
    that one order's change costs the same however many orders rest on other
    symbols. ``order_ids`` (with ``orders_of`` empty) loads these orders only
    (a cancel, a change), and none for a placement (``order_ids=()``): a new
    order matches against the quote, never against the resting orders. So
    placing, canceling or changing one order reads none of the orders resting
    on its symbol or any other.

    Of the orders not loaded the engine needs only their total reservation
    (buying power, order margin; ``engine.reserved_elsewhere``) and their
    remaining qty per symbol and side (closing orders net against it,
    ``engine.working_elsewhere``): the book's ``working_totals`` (kept by
    ``book_save`` over every working order) less what the loaded orders add,
    with no query. Exact: decimals with 10 places in totals below 10**18
    (reservations are accepted within buying power) fit Decimal's 28 digits,
    so adding and taking away in any order gives the same value as a sum
    over the rows. (SQLite, for tests only, stores decimals as floats anyway.)"""
    working = PaperOrder.objects.filter(account=paper, working=True)
    if orders_of is None and order_ids is None:
        rows = list(working.order_by("seq"))
    else:
        scope = Q(symbol__in=sorted(set(orders_of or ())))
        if order_ids:
            scope |= Q(broker_order_id__in=sorted(set(order_ids)))
        if expiring_by is not None:
            # Rounding to microseconds is monotonic and a saved expiry loads
            # back to the same microsecond: every order that
            # expire_day_orders(expiring_by) would expire is loaded.
            scope |= Q(expires_at__lte=to_datetime(expiring_by))
        rows = list(working.filter(scope).order_by("seq"))
    totals = totals_from_json(paper.working_totals)
    counted = {row.broker_order_id: (row.symbol, row.side, row.reserved, row.qty - row.filled_qty) for row in rows}
    elsewhere = {key: list(values) for key, values in totals.items()}
    for symbol, side, reserved, remaining in counted.values():
        left = elsewhere.setdefault((symbol, side), [ZERO, ZERO])
        left[0] -= reserved
        left[1] -= remaining
    reserved_elsewhere = sum((r for r, _ in elsewhere.values()), ZERO)
    working_elsewhere = {key: q for key, (_, q) in elsewhere.items() if q}
    engine = PaperEngine(
        engine_config(),
        fees_paid=paper.fees_paid,
        next_order_no=paper.next_order_no,
        next_trade_no=paper.next_trade_no,
        reserved_elsewhere=reserved_elsewhere,
        working_elsewhere=working_elsewhere,
        base_currency=paper.account.base_currency,
        balances=dict(PaperBalance.objects.filter(account=paper).values_list("currency", "amount")),
    )
    book = LoadedBook(paper=paper, engine=engine, totals=totals, counted=counted)
    positions = list(PaperPosition.objects.filter(account=paper))
    wanted = {*symbols, *(r.symbol for r in rows), *(p.symbol for p in positions if p.qty)}
    for spec in specs_for(wanted).values():
        engine.add_spec(spec)
    for p in positions:
        book.position_pks[p.symbol] = p.pk
        engine.restore_position(Position(symbol=p.symbol, qty=p.qty, avg_price=p.avg_price, realized_pnl=p.realized_pnl))
    for symbol, data in (paper.market_state or {}).items():
        engine.restore_market(symbol, market_from_json(data))
    for row in rows:
        book.order_pks[row.broker_order_id] = row.pk
        engine.restore_order(order_from_row(row))
    return book


def _totals_update(book: LoadedBook, orders: Iterable[Order]) -> None:
    """Take what the changed orders added to the working totals as loaded,
    add what they add now (nothing once they stop working)."""
    for order in orders:
        before = book.counted.pop(order.broker_order_id, None)
        if before is not None:
            symbol, side, reserved, remaining = before
            total = book.totals.setdefault((symbol, side), [ZERO, ZERO])
            total[0] -= reserved
            total[1] -= remaining
        if order.status in WORKING:
            now_counted = (order.symbol, order.side, order.reserved, order.qty - order.filled_qty)
            book.counted[order.broker_order_id] = now_counted
            total = book.totals.setdefault((order.symbol, order.side), [ZERO, ZERO])
            total[0] += now_counted[2]
            total[1] += now_counted[3]


def book_save(book: LoadedBook, now: float) -> Changes:
    """Write what the engine changed since loading; returns those changes."""
    engine, paper = book.engine, book.paper
    changes = engine.take_changes()
    if not (changes.orders or changes.fills or changes.positions or changes.markets or changes.entries):
        return changes
    new_rows: list[PaperOrder] = []
    changed_rows: list[PaperOrder] = []
    for order in changes.orders:
        pk = book.order_pks.get(order.broker_order_id)
        (changed_rows if pk else new_rows).append(_order_row(order, paper, pk))
    if new_rows:
        PaperOrder.objects.bulk_create(new_rows)
        book.order_pks.update({r.broker_order_id: r.pk for r in new_rows if r.pk is not None})
    if changed_rows:
        PaperOrder.objects.bulk_update(changed_rows, _ORDER_UPDATE_FIELDS)
    if changes.fills:
        missing = {f.broker_order_id for f in changes.fills} - set(book.order_pks)
        if missing:
            # A fill of an order loaded as final cannot happen; of one created
            # by a backend that returns no ids on bulk insert, it can.
            book.order_pks.update(
                PaperOrder.objects.filter(account=paper, broker_order_id__in=missing).values_list("broker_order_id", "pk")
            )
        PaperFill.objects.bulk_create(
            PaperFill(
                account=paper,
                order_id=book.order_pks[f.broker_order_id],
                trade_id=f.trade_id,
                broker_order_id=f.broker_order_id,
                client_order_id=f.client_order_id,
                symbol=f.symbol,
                side=f.side,
                qty=f.qty,
                price=f.price,
                fee=f.fee,
                fee_currency=f.fee_currency,
                executed_at=to_datetime(f.time),
            )
            for f in changes.fills
        )
    stamp = to_datetime(now)
    new_positions: list[PaperPosition] = []
    changed_positions: list[PaperPosition] = []
    for p in changes.positions:
        pk = book.position_pks.get(p.symbol)
        row = PaperPosition(
            pk=pk, account=paper, symbol=p.symbol, qty=p.qty, avg_price=p.avg_price, realized_pnl=p.realized_pnl, updated_at=stamp
        )
        (changed_positions if pk else new_positions).append(row)
    if new_positions:
        PaperPosition.objects.bulk_create(new_positions)
        book.position_pks.update({r.symbol: r.pk for r in new_positions if r.pk is not None})
    if changed_positions:
        PaperPosition.objects.bulk_update(changed_positions, ["qty", "avg_price", "realized_pnl", "updated_at"])
    if changes.entries:
        PaperLedgerEntry.objects.bulk_create(
            PaperLedgerEntry(
                account=paper,
                currency=e.currency,
                amount=e.amount,
                kind=e.kind,
                rate=e.rate,
                trade_id=e.trade_id,
                note=e.note,
                created_at=to_datetime(e.time),
            )
            for e in changes.entries
        )
    if changes.balances:
        PaperBalance.objects.bulk_create(
            [PaperBalance(account=paper, currency=c, amount=amount, updated_at=stamp) for c, amount in changes.balances.items()],
            update_conflicts=True,
            unique_fields=["account", "currency"],
            update_fields=["amount", "updated_at"],
        )
    fields = ["cash", "fees_paid", "next_order_no", "next_trade_no", "version", "updated_at"]
    paper.version = book_version_new()
    if changes.orders:
        _totals_update(book, changes.orders)
        paper.working_totals = totals_to_json(book.totals)
        fields.append("working_totals")
    paper.cash = engine.cash
    paper.fees_paid = engine.fees_paid
    paper.next_order_no = engine.next_order_no
    paper.next_trade_no = engine.next_trade_no
    if changes.markets:
        paper.market_state = {**(paper.market_state or {}), **{s: market_to_json(m) for s, m in changes.markets.items()}}
        fields.append("market_state")
    paper.save(update_fields=fields)
    return changes


def book_version_new() -> int:
    """A new value for ``PaperAccount.version`` (see there)."""
    return secrets.randbits(63)


# The last book this thread saved and saw committed: (account id, version, engine).
_kept = threading.local()


def book_keep(paper: PaperAccount, engine: PaperEngine) -> None:
    """Keep ``engine`` (the book just saved by ``book_save``) as this
    thread's last saved book once the surrounding transaction commits (a
    rolled-back save is never kept): ``book_kept`` answers it while the
    stored book has not changed since, so a read right after a change (the
    funds after a fill) needs no reload. One book per thread."""
    account_id, version = paper.pk, paper.version

    def keep() -> None:
        _kept.book = (account_id, version, engine)

    transaction.on_commit(keep)


def book_kept(account_id: int) -> PaperEngine | None:
    """This thread's kept book of ``account_id`` if the stored book is still
    that version (one query, no lock: a committed version is the whole book
    at that point), else None. The engine is shared: use it to read."""
    kept: tuple[int, int, PaperEngine] | None = getattr(_kept, "book", None)
    if kept is None or kept[0] != account_id:
        return None
    if PaperAccount.objects.filter(pk=account_id).values_list("version", flat=True).first() != kept[1]:
        _kept.book = None
        return None
    return kept[2]
