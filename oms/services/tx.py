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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

from django.db import transaction

from brokers.models import BrokerAccount
from oms.models import Order, Position
from oms.payloads import order_payload, position_payload

# The module, not the function: funds may import services that import this
# module, and the name is only looked up when a commit publishes.
from oms.services import funds
from streams.publish import publish

logger = logging.getLogger(__name__)


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

    def __enter__(self) -> AccountTx:
        self._atomic.__enter__()
        try:
            self.account = BrokerAccount.objects.select_for_update().get(pk=self.account_id)
        except BaseException as error:
            self._atomic.__exit__(type(error), error, error.__traceback__)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            try:
                self._finish()
            except BaseException as error:
                self._atomic.__exit__(type(error), error, error.__traceback__)
                raise
        self._atomic.__exit__(exc_type, exc, tb)

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
            for channel, seq, data in updates:
                publish(channel, seq, data)
            if funds_seq is not None:
                try:
                    payload = funds.funds_payload(account)
                except Exception:
                    logger.exception("funds of account %s not computed", account.pk)
                    payload = None
                publish(f"funds:{account.pk}", funds_seq, payload)
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    logger.exception("after-commit step failed for account %s", account.pk)

        transaction.on_commit(publish_all)
