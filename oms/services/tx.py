"""One account's short write: the account row lock, the stream sequences
taken inside it, and the publication after commit.

Every state change of one account takes the account row's lock for the short
write (never across a broker call). The sequence of each account channel is a
counter on that row, incremented in the transaction that changes state and
published only once it commits, so subscribers see updates gap-free and never
one that rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

from brokers.models import BrokerAccount
from oms.models import Order, Position
from oms.payloads import order_payload, position_payload
from streams.publish import publish

logger = logging.getLogger(__name__)

FundsProvider = Callable[[BrokerAccount], dict[str, Any] | None]
_funds_provider: FundsProvider | None = None


def register_funds_provider(provider: FundsProvider) -> None:
    global _funds_provider
    _funds_provider = provider


class AccountTx:
    """Use inside ``transaction.atomic()``: ``tx = AccountTx.lock(account_id)``."""

    def __init__(self, account: BrokerAccount) -> None:
        self.account = account
        self.updates: list[tuple[str, int, Any]] = []
        self.funds_seq: int | None = None
        self.after_commit: list[Callable[[], None]] = []

    @classmethod
    def lock(cls, account_id: int) -> AccountTx:
        return cls(BrokerAccount.objects.select_for_update().get(pk=account_id))

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
        self.after_commit.append(callback)

    def finish(self) -> None:
        """Save the sequences and schedule publication and follow-ups."""
        if self.updates or self.funds_seq is not None:
            BrokerAccount.objects.filter(pk=self.account.pk).update(
                orders_seq=self.account.orders_seq,
                positions_seq=self.account.positions_seq,
                funds_seq=self.account.funds_seq,
            )
        updates, funds_seq, account = list(self.updates), self.funds_seq, self.account
        callbacks = list(self.after_commit)

        def publish_all() -> None:
            for channel, seq, data in updates:
                publish(channel, seq, data)
            if funds_seq is not None and _funds_provider is not None:
                try:
                    funds = _funds_provider(account)
                except Exception:
                    logger.exception("funds of account %s not computed", account.pk)
                    funds = None
                publish(f"funds:{account.pk}", funds_seq, funds)
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    logger.exception("after-commit step failed for account %s", account.pk)

        transaction.on_commit(publish_all)
