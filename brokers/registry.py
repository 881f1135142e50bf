"""From a BrokerAccount's kind to its adapter, and the sink through which
adapters report what happened at the broker (fills, order updates).

Adapters never import the OMS: the OMS registers the sink in its
``AppConfig.ready()``, and each adapter package registers its factory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from brokers.base import Broker, BrokerUnavailable, Fill, OrderStatus

if TYPE_CHECKING:
    from brokers.models import BrokerAccount

logger = logging.getLogger(__name__)

BrokerFactory = Callable[["BrokerAccount"], Broker]
FillSink = Callable[[int, list[Fill]], object]
OrderUpdateSink = Callable[[int, list[OrderStatus]], object]

_factories: dict[str, BrokerFactory] = {}
_fill_sink: FillSink | None = None
_order_sink: OrderUpdateSink | None = None


def register_broker(kind: str, factory: BrokerFactory) -> None:
    _factories[kind] = factory


def unregister_broker(kind: str) -> None:
    _factories.pop(kind, None)


def broker_factory(kind: str) -> BrokerFactory | None:
    """The factory registered for ``kind`` (tests wrap or replace it for a while)."""
    return _factories.get(kind)


def adapter_registered(kind: str) -> bool:
    """Whether an adapter serves accounts of ``kind`` in this process."""
    return kind in _factories


def broker_for(account: BrokerAccount) -> Broker:
    factory = _factories.get(account.kind)
    if factory is None:
        raise BrokerUnavailable(f"No adapter for broker kind '{account.kind}'.")
    return factory(account)


def register_sinks(*, fills: FillSink, orders: OrderUpdateSink) -> None:
    global _fill_sink, _order_sink
    _fill_sink, _order_sink = fills, orders


def deliver_fills(account_id: int, fills: list[Fill]) -> None:
    """Adapters call this when fills happen (paper matching, postbacks, WS)."""
    if not fills:
        return
    if _fill_sink is None:
        logger.error("fills for account %s dropped: no sink registered", account_id)
        return
    _fill_sink(account_id, fills)


def deliver_order_updates(account_id: int, updates: list[OrderStatus]) -> None:
    """Adapters call this when an order changes at the broker on its own
    (expired at the session close, canceled by the venue...)."""
    if not updates:
        return
    if _order_sink is None:
        logger.error("order updates for account %s dropped: no sink registered", account_id)
        return
    _order_sink(account_id, updates)
