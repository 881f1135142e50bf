"""Positions as a projection of deals (average cost, the instrument's
multiplier), and the internal bookings: close_by and reassign."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from brokers.models import BrokerAccount, PositionMode
from marketdata.models import Instrument
from marketdata.quotes import quote_get
from oms.errors import Conflict, InvalidInput, NotFound
from oms.models import OPEN_STATUSES, Deal, DealKind, Order, Position, PositionSide, PositionStatus, Side
from oms.services.tx import AccountTx

ZERO = Decimal(0)


def multiplier_of(symbol: str) -> Decimal:
    value = Instrument.objects.filter(symbol=symbol).values_list("multiplier", flat=True).first()
    return value if value is not None else Decimal(1)


@dataclass
class Book:
    """Signed quantity arithmetic of one position (no Django)."""

    qty: Decimal  # signed: long > 0
    avg_price: Decimal
    realized: Decimal
    multiplier: Decimal

    def apply(self, side: str, qty: Decimal, price: Decimal) -> None:
        signed = qty if side == Side.BUY else -qty
        if self.qty == 0 or (self.qty > 0) == (signed > 0):
            total = abs(self.qty) + qty
            self.avg_price = (self.avg_price * abs(self.qty) + price * qty) / total
            self.qty += signed
            return
        closing = min(qty, abs(self.qty))
        direction = Decimal(1) if self.qty > 0 else Decimal(-1)
        self.realized += (price - self.avg_price) * closing * self.multiplier * direction
        self.qty += signed
        if self.qty == 0:
            self.avg_price = ZERO
        elif (self.qty > 0) != (direction > 0):
            self.avg_price = price  # flipped: the rest opened at this price


def _book_of(position: Position) -> Book:
    signed = position.qty if position.side == PositionSide.LONG else -position.qty
    return Book(
        qty=Decimal(signed),
        avg_price=Decimal(position.avg_price),
        realized=Decimal(position.realized_pnl),
        multiplier=Decimal(position.multiplier),
    )


def _store_book(position: Position, book: Book, at: datetime) -> None:
    position.qty = abs(book.qty)
    if book.qty != 0:
        position.side = PositionSide.LONG if book.qty > 0 else PositionSide.SHORT
    position.avg_price = book.avg_price.quantize(Decimal("1e-10"))
    position.realized_pnl = book.realized.quantize(Decimal("1e-10"))
    if position.qty == 0:
        position.status = PositionStatus.CLOSED
        position.closed_at = at
        position.unrealized_pnl = ZERO
    else:
        mark_position(position, position.last_price)


def mark_position(position: Position, last: Decimal | None) -> None:
    position.last_price = last
    if last is None or position.qty == 0:
        position.unrealized_pnl = ZERO
        return
    direction = 1 if position.side == PositionSide.LONG else -1
    position.unrealized_pnl = ((last - position.avg_price) * position.qty * position.multiplier * direction).quantize(Decimal("1e-10"))


def _new_position(account: BrokerAccount, symbol: str, strategy_id: str, side: str, at: datetime) -> Position:
    quote = quote_get(symbol)
    return Position(
        account=account,
        symbol=symbol,
        strategy_id=strategy_id,
        side=PositionSide.LONG if side == Side.BUY else PositionSide.SHORT,
        qty=ZERO,
        avg_price=ZERO,
        realized_pnl=ZERO,
        unrealized_pnl=ZERO,
        multiplier=multiplier_of(symbol),
        last_price=quote.last if quote else None,
        opened_at=at,
    )


def position_for_deal(
    account: BrokerAccount, *, symbol: str, strategy_id: str, side: str, position_id: int | None, at: datetime
) -> Position:
    """The position a deal books into: hedging accounts use the order's
    position (or open a new one); netting accounts the one open position of
    (symbol, strategy)."""
    if account.position_mode == PositionMode.HEDGING:
        if position_id is not None:
            position = Position.objects.filter(pk=position_id, account=account, status=PositionStatus.OPEN).first()
            if position is not None and position.symbol == symbol:
                return position
        return _new_position(account, symbol, strategy_id, side, at)
    position = Position.objects.filter(account=account, symbol=symbol, strategy_id=strategy_id, status=PositionStatus.OPEN).first()
    return position or _new_position(account, symbol, strategy_id, side, at)


def position_apply_deal(position: Position, *, side: str, qty: Decimal, price: Decimal, at: datetime) -> Position:
    """Apply one deal to its position (caller holds the account lock and saves the deal)."""
    book = _book_of(position)
    book.apply(side, qty, price)
    _store_book(position, book, at)
    position.save()
    return position


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
    position_apply_deal(position, side=side, qty=qty, price=price, at=at)
    deal = Deal.objects.create(
        account=tx.account,
        position=position,
        strategy_id=strategy_id,
        symbol=position.symbol,
        side=side,
        qty=qty,
        price=price,
        kind=kind,
        origin=origin,
        executed_at=at,
    )
    tx.position_changed(position)
    return deal


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
    the target, at its price. The original deals stay untouched."""
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
        at = timezone.now()
        booked = []
        for deal in deals:
            if target is not None and target.symbol != deal.symbol:
                raise InvalidInput("The target position holds another symbol.", fields={"target_position_id": ["Another symbol."]})
            if deal.position_id is None:
                raise InvalidInput(f"Deal {deal.pk} has no position.", fields={"deal_ids": ["Not on a position."]})
            old = Position.objects.get(pk=deal.position_id)
            if old.status != PositionStatus.OPEN:
                raise Conflict(f"Deal {deal.pk}'s position is closed.", code="position_closed")
            if target is not None and old.pk == target.pk:
                raise InvalidInput(f"Deal {deal.pk} is on the target position already.", fields={"target_position_id": ["Same position."]})
            reverse_side = Side.SELL if deal.side == Side.BUY else Side.BUY
            booked.append(
                book_internal_deal(
                    tx,
                    position=old,
                    side=reverse_side,
                    qty=deal.qty,
                    price=deal.price,
                    kind=DealKind.REASSIGN,
                    strategy_id=old.strategy_id,
                    at=at,
                    origin=deal,
                )
            )
            destination = target or position_for_deal(
                tx.account, symbol=deal.symbol, strategy_id=target_strategy_id, side=deal.side, position_id=None, at=at
            )
            strategy = destination.strategy_id if target is not None else target_strategy_id
            booked.append(
                book_internal_deal(
                    tx,
                    position=destination,
                    side=deal.side,
                    qty=deal.qty,
                    price=deal.price,
                    kind=DealKind.REASSIGN,
                    strategy_id=strategy,
                    at=at,
                    origin=deal,
                )
            )
        tx.funds_changed()
    return booked


def positions_rebuild(*, account: BrokerAccount, save: bool = False) -> list[dict]:
    """Recompute every position of the account from its deals; returns the
    differences from the stored rows (empty when they agree)."""
    differences = []
    for position in Position.objects.filter(account=account).order_by("id"):
        book = Book(qty=ZERO, avg_price=ZERO, realized=ZERO, multiplier=position.multiplier)
        # Replay exactly as the deals were applied: in booking (id) order, not
        # executed_at (a late fill from reconciliation, broker clocks vs ours),
        # and rounded after each deal as the stored row is, or average cost and
        # realized P&L drift in the last digits and every rebuild "differs".
        for side, qty, price in position.deals.order_by("id").values_list("side", "qty", "price"):
            book.apply(side, qty, price)
            book.avg_price = book.avg_price.quantize(Decimal("1e-10"))
            book.realized = book.realized.quantize(Decimal("1e-10"))
        expected_qty = abs(book.qty)
        stored_signed = position.qty if position.side == PositionSide.LONG else -position.qty
        expected = {
            "qty": expected_qty,
            "signed_qty": book.qty,
            "avg_price": book.avg_price.quantize(Decimal("1e-10")),
            "realized_pnl": book.realized.quantize(Decimal("1e-10")),
            "status": PositionStatus.OPEN if expected_qty else PositionStatus.CLOSED,
        }
        stored = {
            "qty": position.qty,
            "signed_qty": stored_signed,
            "avg_price": position.avg_price,
            "realized_pnl": position.realized_pnl,
            "status": position.status,
        }
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
    """Re-mark open positions to the latest quotes; publish those that moved."""
    open_ids = list(Position.objects.filter(account=account, status=PositionStatus.OPEN).values_list("pk", "symbol", "last_price"))
    moved = []
    for pk, symbol, last in open_ids:
        quote = quote_get(symbol)
        if quote is not None and quote.last != last:
            moved.append((pk, quote.last))
    if not moved:
        return 0
    with AccountTx(account.pk) as tx:
        for pk, last in moved:
            position = Position.objects.filter(pk=pk, status=PositionStatus.OPEN).first()
            if position is None:
                continue
            mark_position(position, last)
            position.save(update_fields=["last_price", "unrealized_pnl", "updated_at"])
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
