"""Positions as a projection of deals (average cost, the instrument's
multiplier), and the internal bookings: close_by and reassign."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from brokers.models import BrokerAccount, PositionMode
from marketdata.fx import fx_rate
from marketdata.quotes import quote_get
from marketdata.selectors import instruments_cached
from oms.errors import Conflict, InvalidInput, NotFound
from oms.models import OPEN_STATUSES, PRICE_SCALE, RATE_SCALE, Deal, DealKind, Order, Position, PositionSide, PositionStatus, Side
from oms.services.tx import AccountTx
from oms.specs import OrderSpec

ZERO = Decimal(0)
ONE = Decimal(1)
SCALE = PRICE_SCALE


def _q(value: Decimal) -> Decimal:
    # Every amount is kept on the columns' 1e-10 grid, in memory as on the
    # row, so a rebuild replays exactly what was stored; sums on the grid
    # are exact, so nothing drifts (money is rounded only on the wire).
    return value.quantize(SCALE)


def instrument_terms(symbol: str) -> tuple[Decimal, str]:
    """The instrument's multiplier and currency (1 and USD when unknown), from
    the process's instrument cache."""
    instrument = instruments_cached(symbols=[symbol]).get(symbol)
    return (instrument.multiplier, instrument.currency) if instrument is not None else (Decimal(1), "USD")


def multiplier_of(symbol: str) -> Decimal:
    return instrument_terms(symbol)[0]


def _base_asset(symbol: str) -> str | None:
    """``BTC`` of ``BTC/USDT`` or ``BINANCE:BTC/USDT``; None for a non-pair."""
    code = symbol.rpartition(":")[2]
    return code.partition("/")[0] if "/" in code else None


def fee_in_currency(*, fee: Decimal, fee_currency: str, currency: str, symbol: str, price: Decimal) -> Decimal:
    """A deal's fee in its position's currency, for the position's ``fees``.

    A fee in the instrument's currency counts as it is; one in the pair's base
    asset (0.001 BTC on BTC/USDT) at the deal's price, exact and known at the
    deal. A fee in any other currency (an exchange's own coin) is not in the
    position's ``fees``: no rate at the deal is recorded for it; the deal keeps
    it with its ``fee_currency`` and the cash ledger books it in that currency."""
    if not fee:
        return ZERO
    if not fee_currency or fee_currency == currency:
        return fee
    if fee_currency == _base_asset(symbol):
        return _q(fee * price)
    return ZERO


@dataclass
class Book:
    """The arithmetic of one position (no Django): average cost kept as the
    open quantity's total cost, so a full close realizes exactly proceeds −
    cost. Quantities are signed: long > 0."""

    qty: Decimal
    cost: Decimal  # Σ qty × price of the open quantity (≥ 0, without the multiplier)
    realized: Decimal
    multiplier: Decimal
    max_qty: Decimal = ZERO
    opened_qty: Decimal = ZERO
    opened_value: Decimal = ZERO
    closed_qty: Decimal = ZERO
    closed_value: Decimal = ZERO
    fees: Decimal = ZERO
    realized_base: Decimal | None = ZERO  # None once a close had no rate

    @property
    def avg_price(self) -> Decimal:
        return _q(self.cost / abs(self.qty)) if self.qty else ZERO

    def apply(self, side: str, qty: Decimal, price: Decimal, fee: Decimal = ZERO, rate: Decimal | None = ONE) -> Decimal:
        """Book one deal; returns the P&L it realized (0 unless it reduced).
        ``rate`` converts that P&L to the base currency (None: unknown)."""
        signed = qty if side == Side.BUY else -qty
        self.fees += fee
        realized = ZERO
        opening = qty
        if self.qty != 0 and (self.qty > 0) != (signed > 0):
            held = abs(self.qty)
            closing = min(qty, held)
            # The share of the cost the close takes: all of it on a full close.
            share = self.cost if closing == held else _q(self.cost * closing / held)
            direction = 1 if self.qty > 0 else -1
            realized = _q((_q(closing * price) - share) * self.multiplier * direction)
            self.realized += realized
            self.cost -= share
            self.closed_qty += closing
            self.closed_value += _q(closing * price)
            opening = qty - closing  # > 0: the deal flips the position
        if opening:
            value = _q(opening * price)
            self.cost += value
            self.opened_qty += opening
            self.opened_value += value
        self.qty += signed
        if self.qty == 0:
            self.cost = ZERO
        self.max_qty = max(self.max_qty, abs(self.qty))
        if realized:
            base = to_base(realized, rate)
            self.realized_base = None if base is None or self.realized_base is None else self.realized_base + base
        return realized


def to_base(amount: Decimal, rate: Decimal | None) -> Decimal | None:
    """``amount`` in the base currency at ``rate`` (None when unknown; 0 is 0)."""
    if not amount:
        return ZERO
    return None if rate is None else _q(amount * rate)


def base_rate(currency: str, base_currency: str) -> Decimal | None:
    """One unit of ``currency`` in ``base_currency`` now: the latest FX quote,
    a stale one rather than none (a fill is booked whatever the feed does)."""
    rate = fx_rate(currency, base_currency, allow_stale=True)
    return None if rate is None else rate.quantize(RATE_SCALE)  # as the deal's column keeps it


def _book_of(position: Position) -> Book:
    signed = position.qty if position.side == PositionSide.LONG else -position.qty
    return Book(
        qty=Decimal(signed),
        cost=Decimal(position.open_cost),
        realized=Decimal(position.realized_pnl),
        multiplier=Decimal(position.multiplier),
        max_qty=Decimal(position.max_qty),
        opened_qty=Decimal(position.opened_qty),
        opened_value=Decimal(position.opened_value),
        closed_qty=Decimal(position.closed_qty),
        closed_value=Decimal(position.closed_value),
        fees=Decimal(position.fees),
        realized_base=None if position.realized_pnl_base is None else Decimal(position.realized_pnl_base),
    )


def _store_book(position: Position, book: Book, at: datetime) -> None:
    position.qty = abs(book.qty)
    if book.qty != 0:
        position.side = PositionSide.LONG if book.qty > 0 else PositionSide.SHORT
    position.open_cost = book.cost
    position.avg_price = book.avg_price
    position.realized_pnl = book.realized
    position.max_qty = book.max_qty
    position.opened_qty = book.opened_qty
    position.opened_value = book.opened_value
    position.closed_qty = book.closed_qty
    position.closed_value = book.closed_value
    position.fees = book.fees
    position.realized_pnl_base = book.realized_base
    if position.qty == 0:
        position.status = PositionStatus.CLOSED
        position.closed_at = at
        position.unrealized_pnl = position.unrealized_pnl_base = ZERO
    else:
        mark_position(position, position.last_price, position.rate)


def mark_position(position: Position, last: Decimal | None, rate: Decimal | None) -> None:
    """Unrealized P&L at ``last``, and in the base currency at ``rate``."""
    position.last_price = last
    position.rate = rate
    if last is None or position.qty == 0:
        position.unrealized_pnl = position.unrealized_pnl_base = ZERO
        return
    direction = 1 if position.side == PositionSide.LONG else -1
    position.unrealized_pnl = _q((_q(last * position.qty) - position.open_cost) * position.multiplier * direction)
    position.unrealized_pnl_base = to_base(position.unrealized_pnl, rate)


def _new_position(account: BrokerAccount, symbol: str, strategy_id: str, side: str, at: datetime) -> Position:
    quote = quote_get(symbol)
    multiplier, currency = instrument_terms(symbol)
    return Position(
        account=account,
        symbol=symbol,
        strategy_id=strategy_id,
        side=PositionSide.LONG if side == Side.BUY else PositionSide.SHORT,
        qty=ZERO,
        avg_price=ZERO,
        realized_pnl=ZERO,
        unrealized_pnl=ZERO,
        multiplier=multiplier,
        currency=currency,
        base_currency=account.base_currency,
        last_price=quote.last if quote else None,
        opened_at=at,
    )


class OpenPositions:
    """The positions deals book into, looked up once for a batch of deals
    (one query) and kept current as the batch books them: hedging accounts
    use the order's open position (or open a new one); netting accounts the
    one open position of (symbol, strategy), a new one once it closed."""

    def __init__(self, account: BrokerAccount, *, symbols: Collection[str] = (), position_ids: Collection[int | None] = ()) -> None:
        self.account = account
        self.hedging = account.position_mode == PositionMode.HEDGING
        self.by_id: dict[int, Position] = {}
        self.by_key: dict[tuple[str, str], Position] = {}
        if self.hedging:
            ids = sorted({i for i in position_ids if i is not None})
            if ids:
                self.by_id = {p.pk: p for p in Position.objects.filter(account=account, pk__in=ids, status=PositionStatus.OPEN)}
        elif symbols:
            # Newest first (Meta.ordering), as .first() picks when there were two.
            for p in Position.objects.filter(account=account, symbol__in=sorted(set(symbols)), status=PositionStatus.OPEN):
                self.by_key.setdefault((p.symbol, p.strategy_id), p)

    def for_deal(self, *, symbol: str, strategy_id: str, side: str, position_id: int | None, at: datetime) -> Position:
        if self.hedging:
            if position_id is not None:
                position = self.by_id.get(position_id)
                if position is not None and position.status == PositionStatus.OPEN and position.symbol == symbol:
                    return position
            return _new_position(self.account, symbol, strategy_id, side, at)
        position = self.by_key.get((symbol, strategy_id))
        if position is None or position.status != PositionStatus.OPEN:
            position = self.by_key[(symbol, strategy_id)] = _new_position(self.account, symbol, strategy_id, side, at)
        return position


def position_for_deal(
    account: BrokerAccount, *, symbol: str, strategy_id: str, side: str, position_id: int | None, at: datetime
) -> Position:
    """The position one deal books into (``OpenPositions``' rule)."""
    return OpenPositions(account, symbols=[symbol], position_ids=[position_id]).for_deal(
        symbol=symbol, strategy_id=strategy_id, side=side, position_id=position_id, at=at
    )


def position_book_deal(
    tx: AccountTx,
    position: Position,
    *,
    side: str,
    qty: Decimal,
    price: Decimal,
    at: datetime,
    kind: str,
    strategy_id: str,
    fee: Decimal = ZERO,
    fee_currency: str = "",
    **deal_fields: Any,
) -> Deal:
    """Apply one deal to its position and insert it (the caller holds the
    account lock): the deal keeps the P&L it realized in the position's
    currency and in the base currency at the deal's rate, and the rate.
    Inside ``tx.bulk()`` the position and the deal are written at its end."""
    rate = base_rate(position.currency, position.base_currency)
    fee_currency = fee_currency or position.currency
    book = _book_of(position)
    fee_here = fee_in_currency(fee=fee, fee_currency=fee_currency, currency=position.currency, symbol=position.symbol, price=price)
    realized = book.apply(side, qty, price, fee_here, rate)
    if rate is not None:
        position.rate = rate
    _store_book(position, book, at)
    tx.position_save(position)
    deal = Deal(
        account=tx.account,
        position=position,
        strategy_id=strategy_id,
        symbol=position.symbol,
        side=side,
        qty=qty,
        price=price,
        fee=fee,
        fee_currency=fee_currency,
        kind=kind,
        currency=position.currency,
        base_currency=position.base_currency,
        rate=rate,
        realized_pnl=realized,
        realized_pnl_base=to_base(realized, rate),
        executed_at=at,
        **deal_fields,
    )
    tx.deal_add(deal)
    return deal


def book_internal_deal(
    tx: AccountTx,
    *,
    position: Position,
    side: str,
    qty: Decimal,
    price: Decimal,
    kind: str,
    strategy_id: str,
    at: datetime,
    origin: Deal | None = None,
) -> Deal:
    return position_book_deal(tx, position, side=side, qty=qty, price=price, at=at, kind=kind, strategy_id=strategy_id, origin=origin)


def _mark_price(symbol: str, fallback: Decimal) -> Decimal:
    quote = quote_get(symbol)
    return quote.last if quote is not None and quote.last else fallback


def position_close_by(*, account: BrokerAccount, position_id_a: int, position_id_b: int) -> list[Deal]:
    """Close two opposite positions of one symbol against each other with two
    internal ``close_by`` deals at one price (the current mark)."""
    if position_id_a == position_id_b:
        raise InvalidInput("close_by needs two different positions.", fields={"position_id_b": ["Must differ from position_id_a."]})
    with AccountTx(account.pk) as tx:
        positions = {p.pk: p for p in Position.objects.filter(account=tx.account, pk__in=[position_id_a, position_id_b])}
        if len(positions) != 2:
            raise NotFound("No such position.")
        a, b = positions[position_id_a], positions[position_id_b]
        if a.status != PositionStatus.OPEN or b.status != PositionStatus.OPEN:
            raise Conflict("Both positions must be open.", code="position_closed")
        if a.symbol != b.symbol:
            raise InvalidInput("close_by needs positions of one symbol.", fields={"position_id_b": ["Another symbol."]})
        if a.side == b.side:
            raise InvalidInput("close_by needs opposite positions (one long, one short).", fields={"position_id_b": ["Same side."]})
        qty = min(a.qty, b.qty)
        price = _mark_price(a.symbol, a.avg_price)
        at = timezone.now()
        deals = []
        for position in (a, b):
            closing_side = Side.SELL if position.side == PositionSide.LONG else Side.BUY
            deals.append(
                book_internal_deal(
                    tx,
                    position=position,
                    side=closing_side,
                    qty=qty,
                    price=price,
                    kind=DealKind.CLOSE_BY,
                    strategy_id=position.strategy_id,
                    at=at,
                )
            )
        tx.funds_changed()
    return deals


def deals_reassign(
    *, account: BrokerAccount, deal_ids: list[int], target_strategy_id: str = "", target_position_id: int | None = None
) -> list[Deal]:
    """Move deals to another strategy/position: for each deal an internal
    ``reassign`` deal reversing it on its old position and one repeating it on
    the target, at its price. The original deals stay untouched.

    All reversals are booked first, then all repetitions, each position's in
    an order that never flips it on the way (a long position whose deals all
    move away closes as long, never via a short), and every booking goes to
    an open position read fresh: a netting account keeps one open position
    per (symbol, strategy) whatever the target held before."""
    if not deal_ids:
        raise InvalidInput("deal_ids is empty.", fields={"deal_ids": ["At least one deal."]})
    with AccountTx(account.pk) as tx:
        deals = list(Deal.objects.filter(account=tx.account, pk__in=deal_ids).order_by("executed_at", "id"))
        if len(deals) != len(set(deal_ids)):
            raise NotFound("No such deal.")  # another account's deal looks like none
        target = None
        if target_position_id is not None:
            target = Position.objects.filter(account=tx.account, pk=target_position_id).first()
            if target is None:
                raise NotFound("No such position.")
            if target.status != PositionStatus.OPEN:
                raise Conflict("The target position is closed.", code="position_closed")
        strategy = target.strategy_id if target is not None else target_strategy_id
        netting = tx.account.position_mode == PositionMode.NETTING
        olds = {p.pk: p for p in Position.objects.filter(pk__in={d.position_id for d in deals if d.position_id is not None})}
        for deal in deals:
            if target is not None and target.symbol != deal.symbol:
                raise InvalidInput("The target position holds another symbol.", fields={"target_position_id": ["Another symbol."]})
            if deal.position_id is None:
                raise InvalidInput(f"Deal {deal.pk} has no position.", fields={"deal_ids": ["Not on a position."]})
            old = olds[deal.position_id]
            if old.status != PositionStatus.OPEN:
                raise Conflict(f"Deal {deal.pk}'s position is closed.", code="position_closed")
            if (target is not None and old.pk == target.pk) or (netting and target is None and old.strategy_id == strategy):
                raise InvalidInput(f"Deal {deal.pk} is on the target position already.", fields={"target_position_id": ["Same position."]})
        at = timezone.now()
        booked: list[Deal] = []
        by_old: dict[int, list[Deal]] = {}
        for deal in deals:
            by_old.setdefault(deal.position_id, []).append(deal)  # type: ignore[arg-type]
        for pk, moved in by_old.items():
            old = olds[pk]
            reversals = [(_opposite(d.side), d) for d in moved]
            for side, deal in _without_flips(_signed_qty(old), reversals):
                source = position_for_deal(tx.account, symbol=old.symbol, strategy_id=old.strategy_id, side=side, position_id=pk, at=at)
                booked.append(_book_reassign(tx, source, side, deal, at))
        by_symbol: dict[str, list[Deal]] = {}
        for deal in deals:
            by_symbol.setdefault(deal.symbol, []).append(deal)
        for symbol, moved in by_symbol.items():
            wanted = target.pk if target is not None else None
            destination = _destination(tx.account, wanted, symbol=symbol, strategy_id=strategy, side=moved[0].side, at=at)
            start = _signed_qty(destination) if destination.pk is not None else ZERO
            for side, deal in _without_flips(start, [(d.side, d) for d in moved]):
                # Hedging without a target: the moved deals of one symbol make one new position.
                destination = _destination(tx.account, destination.pk or wanted, symbol=symbol, strategy_id=strategy, side=side, at=at)
                booked.append(_book_reassign(tx, destination, side, deal, at))
        tx.funds_changed()
    return booked


def _opposite(side: str) -> str:
    return Side.SELL if side == Side.BUY else Side.BUY


def _signed_qty(position: Position) -> Decimal:
    return position.qty if position.side == PositionSide.LONG else -position.qty


def _without_flips(start: Decimal, bookings: list[tuple[str, Deal]]) -> list[tuple[str, Deal]]:
    """``bookings`` ordered so a position at ``start`` reaches its final
    quantity without crossing zero on the way (it crosses once only when the
    final side differs): first those in the final direction (the start's when
    the end is flat), then the rest, each group in time order."""
    end = start + sum((q.qty if s == Side.BUY else -q.qty for s, q in bookings), ZERO)
    direction = end if end else start
    first = [b for b in bookings if (b[0] == Side.BUY) == (direction > 0)]
    return first + [b for b in bookings if b not in first] if direction else bookings


def _destination(account: BrokerAccount, position_id: int | None, *, symbol: str, strategy_id: str, side: str, at: datetime) -> Position:
    """The open position a repetition goes to, read fresh: netting, the one of
    (symbol, strategy); hedging, ``position_id`` while open, else a new one."""
    return position_for_deal(account, symbol=symbol, strategy_id=strategy_id, side=side, position_id=position_id, at=at)


def _book_reassign(tx: AccountTx, position: Position, side: str, deal: Deal, at: datetime) -> Deal:
    return book_internal_deal(
        tx,
        position=position,
        side=side,
        qty=deal.qty,
        price=deal.price,
        kind=DealKind.REASSIGN,
        strategy_id=position.strategy_id,
        at=at,
        origin=deal,
    )


def _expected(book: Book) -> dict[str, Any]:
    return {
        "qty": abs(book.qty),
        "signed_qty": book.qty,
        "avg_price": book.avg_price,
        "open_cost": book.cost,
        "realized_pnl": book.realized,
        "max_qty": book.max_qty,
        "opened_qty": book.opened_qty,
        "opened_value": book.opened_value,
        "closed_qty": book.closed_qty,
        "closed_value": book.closed_value,
        "fees": book.fees,
        "realized_pnl_base": book.realized_base,
        "status": PositionStatus.OPEN if book.qty else PositionStatus.CLOSED,
    }


def _stored(position: Position) -> dict[str, Any]:
    return {
        "qty": position.qty,
        "signed_qty": position.qty if position.side == PositionSide.LONG else -position.qty,
        "avg_price": position.avg_price,
        "open_cost": position.open_cost,
        "realized_pnl": position.realized_pnl,
        "max_qty": position.max_qty,
        "opened_qty": position.opened_qty,
        "opened_value": position.opened_value,
        "closed_qty": position.closed_qty,
        "closed_value": position.closed_value,
        "fees": position.fees,
        "realized_pnl_base": position.realized_pnl_base,
        "status": position.status,
    }


def position_replay(position: Position) -> Book:
    """The position's book recomputed from its deals, in booking (id) order —
    not executed_at (a late fill from reconciliation, broker clocks vs ours)."""
    book = Book(qty=ZERO, cost=ZERO, realized=ZERO, multiplier=position.multiplier)
    deals = position.deals.order_by("id").values_list("side", "qty", "price", "fee", "fee_currency", "rate")
    for side, qty, price, fee, fee_currency, rate in deals:
        fee_here = fee_in_currency(fee=fee, fee_currency=fee_currency, currency=position.currency, symbol=position.symbol, price=price)
        book.apply(side, qty, price, fee_here, rate)
    return book


def positions_rebuild(*, account: BrokerAccount, save: bool = False) -> list[dict]:
    """Recompute every position of the account from its deals; returns the
    differences from the stored rows (empty when they agree)."""
    differences = []
    for position in Position.objects.filter(account=account).order_by("id"):
        book = position_replay(position)
        expected, stored = _expected(book), _stored(position)
        if expected != stored:
            differences.append({"position_id": position.pk, "stored": stored, "expected": expected})
            if save:
                with AccountTx(account.pk) as tx:
                    fresh = Position.objects.get(pk=position.pk)
                    _store_book(fresh, book, fresh.closed_at or timezone.now())
                    if book.qty != 0:
                        fresh.status = PositionStatus.OPEN
                        fresh.closed_at = None
                    fresh.save()
                    tx.position_changed(fresh)
    return differences


def positions_mark(*, account: BrokerAccount) -> int:
    """Re-mark open positions to the latest quotes and FX rates; publish those that moved."""
    rows = list(
        Position.objects.filter(account=account, status=PositionStatus.OPEN).values_list(
            "pk", "symbol", "last_price", "currency", "base_currency", "rate"
        )
    )
    rates: dict[tuple[str, str], Decimal | None] = {}
    moved = []
    for pk, symbol, last, currency, base, rate in rows:
        quote = quote_get(symbol)
        if (currency, base) not in rates:
            rates[(currency, base)] = base_rate(currency, base)
        new_rate = rates[(currency, base)] or rate
        new_last = quote.last if quote is not None else last
        if new_last != last or new_rate != rate:
            moved.append((pk, new_last, new_rate))
    if not moved:
        return 0
    with AccountTx(account.pk) as tx:
        for pk, last, rate in moved:
            position = Position.objects.filter(pk=pk, status=PositionStatus.OPEN).first()
            if position is None:
                continue
            mark_position(position, last, rate)
            position.save(update_fields=["last_price", "rate", "unrealized_pnl", "unrealized_pnl_base", "updated_at"])
            tx.position_changed(position)
        tx.funds_changed()
    return len(moved)


def order_position_check(
    account: BrokerAccount, *, symbol: str, side: str, qty: Decimal, strategy_id: str, position_id: int | None, reduce_only: bool
) -> Position | None:
    """Position rules of a new order, checked under the account lock."""
    position = None
    if position_id is not None:
        position = Position.objects.filter(account=account, pk=position_id).first()
        if position is None:
            raise NotFound("No such position.", fields={"position_id": ["Unknown position."]})
        if position.status != PositionStatus.OPEN:
            raise Conflict("The position is closed.", code="position_closed", fields={"position_id": ["Closed."]})
        if position.symbol != symbol:
            raise InvalidInput("The position holds another symbol.", fields={"position_id": ["Another symbol."]})
        if account.position_mode == PositionMode.NETTING and position.strategy_id != strategy_id:
            raise InvalidInput("The position belongs to another strategy.", fields={"position_id": ["Another strategy."]})
    elif reduce_only:
        if account.position_mode == PositionMode.HEDGING:
            raise InvalidInput("A reduce-only order of a hedging account names its position_id.", fields={"position_id": ["Required."]})
        position = Position.objects.filter(account=account, symbol=symbol, strategy_id=strategy_id, status=PositionStatus.OPEN).first()
    if reduce_only or (position is not None and account.position_mode == PositionMode.HEDGING):
        reducing = position is not None and (position.side == PositionSide.LONG) == (side == Side.SELL)
        if reduce_only and not reducing:
            raise InvalidInput(
                "A reduce-only order must reduce an open position.", code="reduce_only", fields={"reduce_only": ["No position to reduce."]}
            )
        if reducing and position is not None:
            working = working_reduce_qty(position)
            if qty + working > position.qty:
                raise InvalidInput(
                    f"The order would reduce {qty + working} of a position of {position.qty}.",
                    code="reduce_only",
                    fields={"qty": [f"At most {position.qty - working}."]},
                )
    return position


def order_opening_qty(account: BrokerAccount, spec: OrderSpec) -> Decimal:
    """The part of an order that would open or grow a position; the rest
    reduces (or closes) the position it trades against, which is always
    allowed. Netting: against the open position of (symbol, strategy);
    hedging: against ``position_id`` (none opens a new position)."""
    return orders_opening_qty(account, [spec])[0]


def orders_opening_qty(account: BrokerAccount, specs: Sequence[OrderSpec]) -> list[Decimal]:
    """``order_opening_qty`` of each spec, each against the same state (the
    orders of a batch do not count each other), looking each position and
    its working orders up once per batch."""
    positions: dict[tuple[Any, ...], Position | None] = {}
    pendings: dict[tuple[Any, ...], Decimal] = {}
    hedging = account.position_mode == PositionMode.HEDGING
    result = []
    for spec in specs:
        where = ("id", spec.position_id) if hedging else ("symbol", spec.symbol, spec.strategy_id)
        if where not in positions:
            if hedging:
                positions[where] = (
                    None
                    if spec.position_id is None
                    else Position.objects.filter(account=account, pk=spec.position_id, status=PositionStatus.OPEN).first()
                )
            else:
                positions[where] = Position.objects.filter(
                    account=account, symbol=spec.symbol, strategy_id=spec.strategy_id, status=PositionStatus.OPEN
                ).first()
        position = positions[where]
        if position is None or (position.side == PositionSide.LONG) == (spec.side == Side.BUY):
            result.append(spec.qty)
            continue
        key = (*where, spec.side)
        if key not in pendings:
            # Working orders on the same side reduce the position first: two sells
            # of a long 15 cannot each count the 15 as theirs to close.
            same: dict[str, Any] = {"position": position} if hedging else {"symbol": spec.symbol, "strategy_id": spec.strategy_id}
            working = Order.objects.filter(account=account, side=spec.side, status__in=OPEN_STATUSES, **same)
            pendings[key] = sum((qty - filled for qty, filled in working.values_list("qty", "filled_qty")), ZERO)
        result.append(max(spec.qty - max(position.qty - pendings[key], ZERO), ZERO))
    return result


def working_reduce_qty(position: Position) -> Decimal:
    total = ZERO
    for order in Order.objects.filter(position=position, status__in=OPEN_STATUSES, reduce_only=True):
        total += order.qty - order.filled_qty
    return total


def positions_mark_all() -> int:
    """Re-mark the open positions of every account; the number that moved."""
    moved = 0
    account_ids = Position.objects.filter(status=PositionStatus.OPEN).values_list("account_id", flat=True).distinct()
    for account in BrokerAccount.objects.filter(pk__in=list(account_ids)).order_by("id"):
        moved += positions_mark(account=account)
    return moved
