"""One account's short write: the transaction, the account row lock, the
stream sequences taken inside it, and the publication after commit.

Every state change of one account takes the account row's lock for the short
write (never across a broker call). The sequence of each account channel is a
counter on that row, incremented in the transaction that changes state and
published only once it commits, so subscribers see updates gap-free and never
one that rolled back.

``AccountTx`` is a context manager so that no path can forget the last step:

    with AccountTx(account_id) as tx:
        order_transition(tx, order, "canceled", source="rest")

A clean exit (a ``return`` inside the block included) saves the sequences and
schedules the publication; an exception rolls everything back and publishes
nothing.

Inside ``with tx.bulk():`` the writes of a batch (orders, their events,
positions, deals) are held and written with bulk operations when the block
ends, in a fixed number of queries whatever the batch's size (see
``BulkWrites``); the code that books one fill or one transition is the same
in both modes (``tx.order_save``, ``tx.event_add``, ``tx.position_save``,
``tx.deal_add``).

An ``AccountTx`` of an account opened inside another one of the same account
(in one thread) joins it: a savepoint, the outer lock, sequences and
publication (``as`` gives the outer one), so a batch (the fills of a batch
of orders) takes the lock once, saves the sequences once and publishes the
funds once; an exception inside rolls back the savepoint and what it added.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from django.db import transaction
from django.utils import timezone

from brokers.models import BrokerAccount
from oms.models import Deal, Order, OrderEvent, Position
from oms.payloads import order_payload, position_payload

# The module, not the function: funds may import services that import this
# module, and the name is only looked up when a commit publishes.
from oms.services import funds
from streams.publish import publish_many

logger = logging.getLogger(__name__)


# The AccountTx open in this thread, per account (the outermost one).
_open = threading.local()


def _opened() -> dict[int, AccountTx]:
    opened: dict[int, AccountTx] | None = getattr(_open, "by_account", None)
    if opened is None:
        opened = _open.by_account = {}
    return opened


# What a batch's bulk write updates on orders and positions: every field the
# booking of a fill, a transition or a broker's answer changes (the rest of
# the row is never changed there). closing_order is not one: it is cleared
# on its own, by query.
ORDER_BULK_FIELDS = ["broker_order_id", "status", "status_message", "filled_qty", "avg_fill_price", "updated_at"]
POSITION_BULK_FIELDS = [
    f.attname
    for f in Position._meta.concrete_fields
    if not f.primary_key and f.name not in ("account", "symbol", "strategy_id", "closing_order", "opened_at")
]


def _update(model: type[Order] | type[Position], rows: list[Any], fields: list[str]) -> None:
    # One row: a plain UPDATE (bulk_update's CASE per field costs more to build).
    if len(rows) == 1:
        rows[0].save(update_fields=fields)
    elif rows:
        model.objects.bulk_update(rows, fields)


class BulkWrites:
    """A batch's writes, held in order and written in one go."""

    def __init__(self) -> None:
        self.orders: dict[int, Order] = {}
        self.events: list[OrderEvent] = []
        self.positions: dict[int, Position] = {}  # by id(): new ones have no pk yet
        self.deals: list[Deal] = []
        self.closing_cleared: list[int] = []  # orders no position may keep as its closing order
        self.positions_changed: dict[int, Position] = {}

    def flush(self, tx: AccountTx) -> None:
        now = timezone.now()
        new = [p for p in self.positions.values() if p.pk is None]
        old = [p for p in self.positions.values() if p.pk is not None]
        for p in self.positions.values():
            p.updated_at = now
        if new:
            Position.objects.bulk_create(new)  # their ids, for the deals (PostgreSQL, SQLite >= 3.35)
        _update(Position, old, POSITION_BULK_FIELDS)
        if self.deals:
            Deal.objects.bulk_create(self.deals)
        _update(Order, list(self.orders.values()), ORDER_BULK_FIELDS)
        if self.events:
            OrderEvent.objects.bulk_create(self.events)
        if self.closing_cleared:
            Position.objects.filter(closing_order__in=self.closing_cleared).update(closing_order=None)
        for position in self.positions_changed.values():
            tx.position_changed(position)  # once per position, its state after the batch


class AccountTx:
    """``with AccountTx(account_id) as tx:`` opens a transaction (a savepoint
    inside an outer one) and locks the account row; ``tx.account`` is the
    locked row."""

    account: BrokerAccount

    def __init__(self, account_id: int) -> None:
        self.account_id = account_id
        self.updates: list[tuple[str, int, Any]] = []
        self.funds_seq: int | None = None
        self.after_commit: list[Callable[[], None]] = []
        self._atomic = transaction.atomic()
        self._outer: AccountTx | None = None
        self._mark: tuple[int, int, int, int, int | None, int] | None = None
        self.writes: BulkWrites | None = None

    def __enter__(self) -> AccountTx:
        outer = _opened().get(self.account_id)
        self._atomic.__enter__()
        if outer is not None:
            # Join: the savepoint above; the outer's lock, sequences and publication.
            self._outer = outer
            self._mark = outer._state()
            return outer
        try:
            self.account = BrokerAccount.objects.select_for_update().get(pk=self.account_id)
        except BaseException as error:
            self._atomic.__exit__(type(error), error, error.__traceback__)
            raise
        _opened()[self.account_id] = self
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._outer is not None:
            if exc_type is not None:
                self._outer._restore(self._mark)
            try:
                self._atomic.__exit__(exc_type, exc, tb)
            except BaseException:
                self._outer._restore(self._mark)
                raise
            return
        # Not joinable any more: the commit below runs the after-commit steps
        # (an eager send), whose AccountTx must open a transaction of its own.
        _opened().pop(self.account_id, None)
        if exc_type is None:
            try:
                self._finish()
            except BaseException as error:
                self._atomic.__exit__(type(error), error, error.__traceback__)
                raise
        self._atomic.__exit__(exc_type, exc, tb)

    def _state(self) -> tuple[int, int, int, int, int | None, int]:
        a = self.account
        return (len(self.updates), a.orders_seq, a.positions_seq, a.funds_seq, self.funds_seq, len(self.after_commit))

    def _restore(self, mark: tuple[int, int, int, int, int | None, int] | None) -> None:
        """Forget what a joined block that rolled back added."""
        if mark is None:
            return
        updates, orders_seq, positions_seq, funds_seq, own_funds_seq, callbacks = mark
        del self.updates[updates:]
        self.account.orders_seq, self.account.positions_seq, self.account.funds_seq = orders_seq, positions_seq, funds_seq
        self.funds_seq = own_funds_seq
        del self.after_commit[callbacks:]

    @contextlib.contextmanager
    def bulk(self) -> Iterator[None]:
        """Hold this block's writes and write them in bulk at its end (a
        block inside another joins it). The caller keeps what it reads
        current itself: nothing held is in the database before the end."""
        if self.writes is not None:
            yield
            return
        self.writes = writes = BulkWrites()
        try:
            yield
        finally:
            self.writes = None
        writes.flush(self)

    def order_save(self, order: Order, update_fields: list[str] | None = None) -> None:
        """Save a changed order (held in ``bulk``: only ORDER_BULK_FIELDS)."""
        if self.writes is None:
            order.save(update_fields=update_fields)
            return
        order.updated_at = timezone.now()
        self.writes.orders[order.pk] = order

    def event_add(self, event: OrderEvent) -> None:
        if self.writes is None:
            event.save(force_insert=True)
        else:
            self.writes.events.append(event)

    def order_closing_cleared(self, order: Order) -> None:
        """No position keeps ``order`` as its closing order any more."""
        if self.writes is None:
            Position.objects.filter(closing_order=order).update(closing_order=None)
        else:
            self.writes.closing_cleared.append(order.pk)

    def position_save(self, position: Position) -> None:
        if self.writes is None:
            position.save()
            self.position_changed(position)
        else:
            self.writes.positions[id(position)] = position
            self.writes.positions_changed[id(position)] = position

    def deal_add(self, deal: Deal) -> None:
        if self.writes is None:
            deal.save(force_insert=True)
        else:
            self.writes.deals.append(deal)

    def order_changed(self, order: Order) -> None:
        self.account.orders_seq += 1
        self.updates.append((f"orders:{self.account.pk}", self.account.orders_seq, order_payload(order)))

    def position_changed(self, position: Position) -> None:
        self.account.positions_seq += 1
        self.updates.append((f"positions:{self.account.pk}", self.account.positions_seq, position_payload(position)))

    def funds_changed(self) -> None:
        if self.funds_seq is None:
            self.account.funds_seq += 1
            self.funds_seq = self.account.funds_seq

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` after this write commits (never if it rolls back)."""
        self.after_commit.append(callback)

    def _finish(self) -> None:
        """Save the sequences and schedule publication and follow-ups."""
        if self.updates or self.funds_seq is not None:
            BrokerAccount.objects.filter(pk=self.account.pk).update(
                orders_seq=self.account.orders_seq,
                positions_seq=self.account.positions_seq,
                funds_seq=self.account.funds_seq,
            )
        if not self.updates and self.funds_seq is None and not self.after_commit:
            return
        updates, funds_seq, account = list(self.updates), self.funds_seq, self.account
        callbacks = list(self.after_commit)

        def publish_all() -> None:
            # One message per channel (publish_many), held with the rest of
            # a batch's by streams.publish.publishing_batched.
            ready = list(updates)
            if funds_seq is not None:
                try:
                    payload = funds.funds_payload(account)
                except Exception:
                    logger.exception("funds of account %s not computed", account.pk)
                    payload = None
                ready.append((f"funds:{account.pk}", funds_seq, payload))
            publish_many(ready)
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    logger.exception("after-commit step failed for account %s", account.pk)

        transaction.on_commit(publish_all)
