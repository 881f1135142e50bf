"""From a BrokerAccount's kind to its adapter, and the sink through which
adapters report what happened at the broker (fills, order updates).

Adapters never import the OMS: the OMS registers the sink in its
``AppConfig.ready()``, and each adapter package registers its factory.

Connection health goes through hooks too, so ``brokers`` (admin, status,
token refresh) never imports an adapter: each adapter package registers, per
kind, the keys of an account's broker tokens (``register_token_keys``) and a
function that refreshes them (``register_token_refresher``); the OMS registers
how a sync is asked for (``register_sync_requester``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from brokers.base import Broker, BrokerUnavailable, Fill, OrderStatus

if TYPE_CHECKING:
    from brokers.models import BrokerAccount
    from brokers.tokens import TokenKey

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


class HeldDeliveries:
    """What adapters delivered in this thread inside ``deliveries_held``, in
    the order they delivered it."""

    def __init__(self) -> None:
        self.items: list[tuple[str, int, list[Any]]] = []  # ("fills" | "updates", account id, what)

    def fills(self, account_id: int) -> list[Fill]:
        """The fills held for ``account_id`` (still held: see ``fills_taken``)."""
        return [fill for kind, held_for, what in self.items if kind == "fills" and held_for == account_id for fill in what]

    def fills_taken(self, account_id: int) -> None:
        """The caller booked ``fills(account_id)``: they are not delivered at the end."""
        self.items = [item for item in self.items if not (item[0] == "fills" and item[1] == account_id)]

    def deliver(self) -> None:
        items, self.items = self.items, []
        for kind, account_id, what in items:
            try:
                (_deliver_fills_now if kind == "fills" else _deliver_order_updates_now)(account_id, what)
            except Exception:
                # As a robust after-commit delivery: logged; the broker keeps
                # what happened and reconciliation (fills_since) books it.
                logger.exception("held %s of account %s not delivered", kind, account_id)


_held = threading.local()


@contextlib.contextmanager
def deliveries_held() -> Iterator[HeldDeliveries]:
    """Hold the fills and order updates adapters deliver in this thread until
    the block ends (a venue that answers an order with its fill delivers the
    fill inside the call, after its own commit), so that the caller can book
    the fills with the broker's answers in one transaction (``fills`` then
    ``fills_taken``). What the caller did not take is delivered when the
    block ends, in the order it came, an exception included (it happened at
    the broker). A block inside another joins it."""
    outer: HeldDeliveries | None = getattr(_held, "deliveries", None)
    if outer is not None:
        yield outer
        return
    held = _held.deliveries = HeldDeliveries()
    try:
        yield held
    finally:
        _held.deliveries = None
        held.deliver()


def deliver_fills(account_id: int, fills: list[Fill]) -> None:
    """Adapters call this when fills happen (paper matching, postbacks, WS)."""
    if not fills:
        return
    held: HeldDeliveries | None = getattr(_held, "deliveries", None)
    if held is not None:
        held.items.append(("fills", account_id, list(fills)))
        return
    _deliver_fills_now(account_id, fills)


def _deliver_fills_now(account_id: int, fills: list[Fill]) -> None:
    if _fill_sink is None:
        logger.error("fills for account %s dropped: no sink registered", account_id)
        return
    _fill_sink(account_id, fills)


def deliver_order_updates(account_id: int, updates: list[OrderStatus]) -> None:
    """Adapters call this when an order changes at the broker on its own
    (expired at the session close, canceled by the venue...)."""
    if not updates:
        return
    held: HeldDeliveries | None = getattr(_held, "deliveries", None)
    if held is not None:
        held.items.append(("updates", account_id, list(updates)))
        return
    _deliver_order_updates_now(account_id, updates)


def _deliver_order_updates_now(account_id: int, updates: list[OrderStatus]) -> None:
    if _order_sink is None:
        logger.error("order updates for account %s dropped: no sink registered", account_id)
        return
    _order_sink(account_id, updates)


# --- connection health hooks --------------------------------------------------------


class TokenRefresher(Protocol):
    def __call__(self, account: BrokerAccount, *, force: bool) -> list[str]:
        """Refresh the account's broker tokens and return the names refreshed.

        ``force=False`` (the scheduled refresh): only those that are missing or
        expire soon; ``force=True`` ("refresh token now"): all of them. Raises
        the broker's errors (``TokenIssueTooSoon`` inside the issue-rate rule)."""
        ...


TokenKeys = Callable[["BrokerAccount"], Sequence["TokenKey"]]
SyncRequester = Callable[[int], "dict[str, Any] | None"]

_token_refreshers: dict[str, TokenRefresher] = {}
_token_keys: dict[str, TokenKeys] = {}
_sync_requester: SyncRequester | None = None


def register_token_refresher(kind: str, refresher: TokenRefresher) -> None:
    _token_refreshers[kind] = refresher


def unregister_token_refresher(kind: str) -> None:
    _token_refreshers.pop(kind, None)


def token_refresher(kind: str) -> TokenRefresher | None:
    """The refresher of ``kind``'s tokens (None: its accounts have no tokens to refresh)."""
    return _token_refreshers.get(kind)


def register_token_keys(kind: str, keys: TokenKeys) -> None:
    """``keys(account)``: the ``brokers.tokens.TokenKey`` of each token the
    account's credential holds (read by the status with ``token_state``)."""
    _token_keys[kind] = keys


def unregister_token_keys(kind: str) -> None:
    _token_keys.pop(kind, None)


def token_keys_provider(kind: str) -> TokenKeys | None:
    """The function registered for ``kind`` (tests replace it for a while)."""
    return _token_keys.get(kind)


def token_keys_for(account: BrokerAccount) -> list[TokenKey]:
    keys = _token_keys.get(account.kind)
    return list(keys(account)) if keys is not None else []


def register_sync_requester(requester: SyncRequester) -> None:
    global _sync_requester
    _sync_requester = requester


def sync_request(account_id: int) -> dict[str, Any] | None:
    """Ask for a sync of the account: its summary when it ran here and now
    (eager Celery), None when it was queued. Raises BrokerUnavailable when no
    OMS registered how to sync."""
    if _sync_requester is None:
        raise BrokerUnavailable("Account sync is not available in this process.")
    return _sync_requester(account_id)


# --- logins a person must make ---------------------------------------------------------

LoginCheck = Callable[["BrokerAccount"], bool]
_login_checks: dict[str, LoginCheck] = {}


def register_login_check(kind: str, check: LoginCheck) -> None:
    """``check(account)``: whether the account needs a person to log in at
    the broker before it can trade (Kite: no valid access token). Such an
    account's status reads ``login_required``."""
    _login_checks[kind] = check


def unregister_login_check(kind: str) -> None:
    _login_checks.pop(kind, None)


def login_check(kind: str) -> LoginCheck | None:
    return _login_checks.get(kind)


def login_required(account: BrokerAccount) -> bool:
    check = _login_checks.get(account.kind)
    if check is None:
        return False
    try:
        return bool(check(account))
    except Exception:  # an account its adapter cannot read (credentials unset): not a login matter
        logger.info("login check of account %s failed", account.pk, exc_info=True)
        return False
