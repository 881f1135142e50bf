"""Reconciliation: make the OMS agree with what the broker says happened.

Per account, on a schedule and on demand: pull the broker's open orders and
the orders and fills since the account's checkpoint, then

* book missing fills exactly once (``fills_apply`` dedups by broker trade id;
  a broker reporting cumulative fills (KIS) has none: each order's progress
  is booked from the orders it lists, ``fills_apply_progress``);
* settle ``unknown`` orders (the send timed out): found at the broker -> its
  status; not found after a grace period -> rejected. Never sent again;
* move our working orders to the broker's status (a missed update);
* import orders the broker has and we don't (``source=external``), never drop them;
* re-ask a cancel left pending (its task was lost).

All broker calls happen first, outside any transaction; then each change is a
short write under the account lock. A broker error changes nothing and leaves
the checkpoint where it was: the next run asks again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone

from brokers.base import Broker, BrokerError, Fill
from brokers.base import OrderStatus as BrokerOrderStatus
from brokers.models import AccountStatus, BrokerAccount
from brokers.registry import adapter_registered, broker_for
from brokers.services import broker_account_record_sync
from core.masking import mask_secrets, mask_text
from oms.models import FINAL_STATUSES, Order, OrderEvent, OrderStatus, OrderType, Side, Source, TimeInForce
from oms.services.enqueue import enqueue_cancel
from oms.services.fills import fills_apply, fills_apply_progress
from oms.services.funds import funds_fetch
from oms.services.lifecycle import order_find, order_settle, order_transition
from oms.services.tx import AccountTx
from oms.specs import is_client_order_id

logger = logging.getLogger(__name__)

# Orders the broker may list under a time of its own clock: look a little
# before the checkpoint (booking is idempotent, so overlap costs nothing).
OVERLAP = timedelta(minutes=5)
# Matching an order by symbol, side and qty (brokers without client order
# ids): the broker's creation time lies this close to our send time.
MATCH_WINDOW = timedelta(minutes=2)
WORKING = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL, OrderStatus.PENDING_CHANGE)
# Broker statuses that settle something; its transient ones (pending_*) do not.
SETTLING = frozenset({"new", "partially_filled", "filled", "canceled", "rejected", "expired"})
NOT_FOUND = "Not found at the broker."


@dataclass
class ReconcileSummary:
    account_id: int
    ok: bool = True
    error: str = ""
    since: datetime | None = None
    until: datetime | None = None
    fills_booked: int = 0
    imported: list[int] = field(default_factory=list)
    linked: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    cancels_retried: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"] = self.since.isoformat() if self.since else None
        data["until"] = self.until.isoformat() if self.until else None
        return data


# --- finding one order at the broker (shared with the sweeper) ------------------------------


def _same_order(order: Order, view: BrokerOrderStatus) -> bool:
    if view.client_order_id:
        return view.client_order_id == order.client_order_id
    if (view.symbol, view.side) != (order.symbol, order.side) or Decimal(view.qty) != order.qty:
        return False
    sent = order.sent_at or order.created_at
    return view.created_at is None or abs(view.created_at - sent) <= MATCH_WINDOW


def order_match_by_attributes(
    order: Order, views: Iterable[BrokerOrderStatus], *, taken: frozenset[str] | set[str] = frozenset()
) -> BrokerOrderStatus | None:
    """The broker's order that is ``order`` for a broker without client order
    ids: same symbol, side and qty, created near our send, and not linked to
    another of our orders (nor ``taken`` by one matched before it); the
    closest in time wins."""
    candidates = [v for v in views if v.broker_order_id and v.broker_order_id not in taken and _same_order(order, v)]
    if not candidates:
        return None
    linked = set(
        Order.objects.filter(account_id=order.account_id, broker_order_id__in=[v.broker_order_id for v in candidates])
        .exclude(pk=order.pk)
        .values_list("broker_order_id", flat=True)
    )
    candidates = [v for v in candidates if v.broker_order_id not in linked]
    sent = order.sent_at or order.created_at
    candidates.sort(key=lambda v: abs(v.created_at - sent) if v.created_at else MATCH_WINDOW)
    return candidates[0] if candidates else None


def order_lookup_at_broker(
    broker: Broker, order: Order, *, recent: list[BrokerOrderStatus] | None = None, taken: frozenset[str] | set[str] = frozenset()
) -> BrokerOrderStatus | None:
    """Ask the broker whether it has ``order``: by client order id where it
    supports them (or by its id once we know it), else by matching symbol,
    side, qty and time among its orders since our send (``taken``: broker
    orders matched to other orders of ours already). Raises BrokerError."""
    if broker.capabilities.supports_client_order_id or order.broker_order_id:
        view = broker.get_order(
            client_order_id=order.client_order_id if broker.capabilities.supports_client_order_id else None,
            broker_order_id=order.broker_order_id or None,
            symbol=order.symbol,
        )
        if view is not None or broker.capabilities.supports_client_order_id:
            return view
    if recent is None:
        recent = broker.orders_since((order.sent_at or order.created_at) - MATCH_WINDOW)
    return order_match_by_attributes(order, recent, taken=taken)


def _tie_to_broker_order(order: Order, broker_order_id: str) -> bool:
    """Give ``order`` the broker's id found by a lookup, under its account's
    lock. False (nothing written) when another of the account's orders
    carries that id: one broker order is never two orders of ours (a match by
    attributes can name an order another lookup has tied meanwhile)."""
    if not broker_order_id or order.broker_order_id:
        return True
    if Order.objects.filter(account_id=order.account_id, broker_order_id=broker_order_id).exclude(pk=order.pk).exists():
        logger.warning("order %s not tied to broker order %s: another order of the account is", order.pk, broker_order_id)
        return False
    order.broker_order_id = broker_order_id
    order.save(update_fields=["broker_order_id", "updated_at"])
    return True


def order_record_broker_view(
    *, order_id: int, view: BrokerOrderStatus, source: str = Source.RECONCILIATION, message: str = ""
) -> Order | None:
    """Record the broker's view of one of our orders found by a lookup: its
    broker order id (which a match by attributes is the only way to learn),
    then its status where that is a legal step (fills come from deals).
    None when the broker's order is another order's of ours by now."""
    with AccountTx(Order.objects.values_list("account_id", flat=True).get(pk=order_id)) as tx:
        order = Order.objects.get(pk=order_id)
        if not _tie_to_broker_order(order, view.broker_order_id):
            return None
        if view.status in SETTLING:
            order_settle(tx, order, view.status, source=source, message=message or view.message, payload=view.raw)
    return order


# --- reconciliation ---------------------------------------------------------------------------


@dataclass
class _BrokerSnapshot:
    views: dict[str, BrokerOrderStatus]  # by broker order id
    fills: list[Fill]
    looked_up: dict[int, BrokerOrderStatus | None]  # our order id -> its view, None: not at the broker
    recent: list[BrokerOrderStatus]
    by_client_id: dict[str, BrokerOrderStatus] = field(default_factory=dict)
    cumulative: bool = False  # fills come as progress on orders (Capabilities.cumulative_fills)

    def progress(self) -> list[BrokerOrderStatus]:
        """Every order view that may carry fills (listed or looked up)."""
        looked_up = [v for v in self.looked_up.values() if v is not None and v.broker_order_id not in self.views]
        return [*self.views.values(), *looked_up]


def _index(*lists: list[BrokerOrderStatus]) -> dict[str, BrokerOrderStatus]:
    """One view per broker order; a final status wins (it never changes back),
    else the later list (asked later) wins."""
    views: dict[str, BrokerOrderStatus] = {}
    for views_list in lists:
        for view in views_list:
            key = view.broker_order_id or f"coid:{view.client_order_id}"
            held = views.get(key)
            if held is not None and held.status in FINAL_STATUSES and view.status not in FINAL_STATUSES:
                continue
            views[key] = view
    return views


def _view_of(order: Order, views: dict[str, BrokerOrderStatus], by_client_id: dict[str, BrokerOrderStatus]) -> BrokerOrderStatus | None:
    if order.broker_order_id and order.broker_order_id in views:
        return views[order.broker_order_id]
    return by_client_id.get(order.client_order_id)


def _ask_broker(account: BrokerAccount, ours: list[Order], since: datetime) -> _BrokerSnapshot:
    broker = broker_for(account)
    recent = broker.orders_since(since)
    fills = broker.fills_since(since)
    open_orders = broker.open_orders()  # asked last: the freshest word on what is working
    views = _index(recent, open_orders)
    by_client_id = {v.client_order_id: v for v in views.values() if v.client_order_id}
    looked_up: dict[int, BrokerOrderStatus | None] = {}
    taken: set[str] = set()  # one broker order per order of ours: a view matched once is not matched again
    for order in ours:
        if _view_of(order, views, by_client_id) is None:
            view = looked_up[order.pk] = order_lookup_at_broker(broker, order, recent=recent, taken=taken)
            if view is not None and view.broker_order_id:
                taken.add(view.broker_order_id)
    return _BrokerSnapshot(
        views=views,
        fills=fills,
        looked_up=looked_up,
        recent=recent,
        by_client_id=by_client_id,
        cumulative=broker.capabilities.cumulative_fills,
    )


def account_reconcile(*, account: BrokerAccount, now: datetime | None = None, fetch_funds: bool = True) -> ReconcileSummary:
    """Reconcile one account with its broker (see the module docstring).
    ``fetch_funds=False``: the caller (the account sync) asks for funds itself."""
    started = now or timezone.now()
    account = BrokerAccount.objects.get(pk=account.pk)  # the checkpoint as stored now
    if account.reconciled_until is not None:
        since = account.reconciled_until - OVERLAP
    else:
        since = started - timedelta(seconds=settings.OMS_RECONCILE_LOOKBACK_SECONDS)
    # Our side is read before the broker is asked, so what the broker says is
    # at least as new as what we act on; each write re-reads under the lock.
    ours = list(Order.objects.filter(account=account, status__in=(OrderStatus.UNKNOWN, *WORKING)).order_by("id"))
    for order in ours:
        if order.status == OrderStatus.UNKNOWN:
            since = min(since, (order.sent_at or order.created_at) - MATCH_WINDOW)
    summary = ReconcileSummary(account_id=account.pk, since=since, until=started)
    try:
        snapshot = _ask_broker(account, ours, since)
    except BrokerError as exc:
        summary.ok, summary.error = False, f"{type(exc).__name__}: {exc.message}"
        logger.warning("reconciliation of account %s failed: %s", account.pk, summary.error)
        broker_account_record_sync(account=account, at=started, error=f"Reconciliation: {summary.error}")
        return summary

    try:
        _link_or_import(account, snapshot, summary)
        summary.fills_booked = len(fills_apply(account.pk, snapshot.fills))
        if snapshot.cumulative:
            # After linking: an order whose answer was lost has its broker id now.
            summary.fills_booked += len(fills_apply_progress(account.pk, snapshot.progress(), source=Source.RECONCILIATION))
        _settle_ours(account, ours, snapshot, started, summary)
    except Exception as exc:
        # Not a broker error: the checkpoint stays; the next run does it again.
        broker_account_record_sync(account=account, at=started, error=f"Reconciliation: {type(exc).__name__}: {exc}")
        raise
    broker_account_record_sync(account=account, at=started, reconciled_until=started)
    if fetch_funds:
        funds_fetch(account)  # the funds projection follows every sync
    return summary


def _link_or_import(account: BrokerAccount, snapshot: _BrokerSnapshot, summary: ReconcileSummary) -> None:
    """Orders the broker has and we don't know by id: ours answered by a lost
    reply (link them), or someone else's (import them)."""
    known_ids = _known(account, "broker_order_id", [v.broker_order_id for v in snapshot.views.values() if v.broker_order_id])
    known_client_ids = _known(account, "client_order_id", list(snapshot.by_client_id))
    for view in snapshot.views.values():
        if view.broker_order_id in known_ids or (view.client_order_id and view.client_order_id in known_client_ids):
            continue
        if not view.client_order_id:
            ours = _unlinked_sent_orders(account)
            # The order whose lookup found this one, else the first sent that matches it.
            claimant = next(
                (pk for pk, v in snapshot.looked_up.items() if v is not None and v.broker_order_id == view.broker_order_id), None
            )
            ours.sort(key=lambda o: o.pk != claimant)
            match = next((o for o in ours if order_match_by_attributes(o, [view]) is view), None)
            if match is not None:
                if order_record_broker_view(order_id=match.pk, view=view) is not None:
                    summary.linked.append(match.pk)
                continue
        order = order_import_external(account_id=account.pk, view=view)
        if order is not None:
            summary.imported.append(order.pk)


def _known(account: BrokerAccount, field_name: str, values: list[str]) -> set[str]:
    """Which of ``values`` our orders of the account carry (chunked: SQLite caps query parameters)."""
    known: set[str] = set()
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        known.update(Order.objects.filter(account=account, **{f"{field_name}__in": chunk}).values_list(field_name, flat=True))
    return known


def _unlinked_sent_orders(account: BrokerAccount) -> list[Order]:
    return list(
        Order.objects.filter(account=account, broker_order_id="", status__in=(OrderStatus.UNKNOWN, OrderStatus.PENDING_NEW))
        .exclude(sent_at=None)
        .order_by("sent_at")
    )


def _settle_ours(
    account: BrokerAccount, ours: list[Order], snapshot: _BrokerSnapshot, started: datetime, summary: ReconcileSummary
) -> None:
    grace = timedelta(seconds=settings.OMS_RECONCILE_GRACE_SECONDS)
    for order in ours:
        view = _view_of(order, snapshot.views, snapshot.by_client_id)
        if view is None:
            view = snapshot.looked_up.get(order.pk)
        if view is None:
            if order.status == OrderStatus.UNKNOWN and (order.sent_at or order.updated_at) < started - grace:
                if _reject_not_found(order.pk):
                    summary.rejected.append(order.pk)
            elif order.status == OrderStatus.PENDING_CANCEL and order.updated_at < started - grace:
                _retry_cancel(order.pk, summary)
            elif order.status != OrderStatus.UNKNOWN:
                # Never invent a state for it: staff look at the broker.
                logger.warning("account %s: working order %s is not at the broker", account.pk, order.pk)
            continue
        outcome = _apply_view(order.pk, view, stale_before=started - grace)
        if outcome == "moved":
            summary.updated.append(order.pk)
        elif outcome == "retry_cancel":
            _retry_cancel(order.pk, summary)


def _apply_view(order_id: int, view: BrokerOrderStatus, *, stale_before: datetime) -> str:
    """Move one of our orders towards the broker's view. A cancel or change
    still in flight is left alone (the broker answers it); one pending longer
    than the grace period lost its answer: a change takes the broker's terms,
    a cancel is asked again."""
    with AccountTx(Order.objects.values_list("account_id", flat=True).get(pk=order_id)) as tx:
        order = Order.objects.get(pk=order_id)
        outcome = "same"
        if order.is_final or view.status not in SETTLING:
            return outcome
        if not _tie_to_broker_order(order, view.broker_order_id):
            return outcome  # the broker's order is another order's of ours: this one was not found
        working_at_broker = view.status not in FINAL_STATUSES
        if order.status in (OrderStatus.PENDING_CANCEL, OrderStatus.PENDING_CHANGE) and working_at_broker:
            if order.updated_at >= stale_before:
                return outcome
            if order.status == OrderStatus.PENDING_CANCEL:
                return "retry_cancel"
            _adopt_broker_terms(order, view)
        message = view.message or f"Reconciled: {view.status} at the broker."
        if _repeats_last_note(order, view.status):
            return outcome
        before = order.status
        order_settle(tx, order, view.status, source=Source.RECONCILIATION, message=message, payload=view.raw)
        if order.status != before:
            outcome = "moved"
    return outcome


def _adopt_broker_terms(order: Order, view: BrokerOrderStatus) -> None:
    """A change whose answer was lost: the broker's qty and prices are the truth."""
    changed = []
    if view.qty and Decimal(view.qty) != order.qty and Decimal(view.qty) >= order.filled_qty:
        order.qty = Decimal(view.qty)
        changed.append("qty")
    if view.price is not None and order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and view.price != order.price:
        order.price = view.price
        changed.append("price")
    if view.stop_price is not None and order.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and view.stop_price != order.stop_price:
        order.stop_price = view.stop_price
        changed.append("stop_price")
    if changed:
        order.save(update_fields=[*changed, "updated_at"])


def _repeats_last_note(order: Order, broker_status: str) -> bool:
    """A broker status we cannot follow is noted once, not on every run."""
    last = OrderEvent.objects.filter(order=order).order_by("-id").values_list("kind", "message").first()
    return last == ("stale_update", f"broker said {broker_status} while {order.status}")


def _reject_not_found(order_id: int) -> bool:
    with AccountTx(Order.objects.values_list("account_id", flat=True).get(pk=order_id)) as tx:
        order = Order.objects.get(pk=order_id)
        moved = order.status == OrderStatus.UNKNOWN
        if moved:
            order_transition(tx, order, OrderStatus.REJECTED, source=Source.RECONCILIATION, message=NOT_FOUND)
    return moved


def _retry_cancel(order_id: int, summary: ReconcileSummary) -> None:
    # A cancel is safe to ask twice; the task does nothing unless still pending_cancel.
    enqueue_cancel(order_id)
    summary.cancels_retried.append(order_id)


# --- imports ---------------------------------------------------------------------------------


def _client_order_id_for(account_id: int, view: BrokerOrderStatus) -> str:
    wanted = view.client_order_id if is_client_order_id(view.client_order_id) else ""
    if not wanted:
        wanted = "x" + re.sub(r"[^A-Za-z0-9_-]", "", view.broker_order_id)[-35:]
    candidate, n = wanted, 1
    while Order.objects.filter(account_id=account_id, client_order_id=candidate).exists():
        n += 1
        candidate = f"{wanted[: 36 - len(str(n)) - 1]}-{n}"
    return candidate


def _import_status(broker_status: str) -> str:
    """The status an imported order starts in. Fills come from deals: an order
    filled at the broker starts as new and its fills move it on."""
    if broker_status in (OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED, OrderStatus.NEW):
        return broker_status
    return OrderStatus.NEW


def order_import_external(*, account_id: int, view: BrokerOrderStatus) -> Order | None:
    """Create the order the broker has and we don't (``source=external``),
    with an ``imported`` event. Returns None when it is ours after all (found
    under the lock) or cannot be an order (no side or quantity)."""
    if view.side not in Side.values or not view.qty or Decimal(view.qty) <= 0 or not view.symbol:
        logger.error("account %s: broker order %s cannot be imported: %r", account_id, view.broker_order_id, view)
        return None
    with AccountTx(account_id) as tx:
        if order_find(account_id, broker_order_id=view.broker_order_id, client_order_id=view.client_order_id) is not None:
            return None
        status = _import_status(view.status)
        order = Order.objects.create(
            account=tx.account,
            client_order_id=_client_order_id_for(account_id, view),
            broker_order_id=view.broker_order_id,
            symbol=view.symbol[:64],
            side=view.side,
            order_type=view.order_type if view.order_type in OrderType.values else OrderType.MARKET,
            qty=Decimal(view.qty),
            price=view.price,
            stop_price=view.stop_price,
            time_in_force=view.time_in_force if view.time_in_force in TimeInForce.values else TimeInForce.GTC,
            status=status,
            source=Source.EXTERNAL,
            status_message=mask_text(view.message)[:1000],
            # At the broker already: the sweeper must never send it.
            sent_at=view.created_at or timezone.now(),
        )
        OrderEvent.objects.create(
            order=order,
            kind="imported",
            to_status=status,
            source=Source.RECONCILIATION,
            message=f"Imported from the broker ({view.status} there).",
            payload=mask_secrets(view.raw),
        )
        tx.order_changed(order)
    return order


# --- every account -------------------------------------------------------------------------------


def accounts_to_reconcile() -> list[int]:
    """Accounts a broker can be asked about (a not_configured one cannot: skipped, not failed every run)."""
    rows = BrokerAccount.objects.filter(status__in=(AccountStatus.ACTIVE, AccountStatus.ERROR)).order_by("id").values_list("pk", "kind")
    return [pk for pk, kind in rows if adapter_registered(kind)]


def accounts_reconcile_all(*, now: datetime | None = None) -> list[ReconcileSummary]:
    """Reconcile every account in turn (the embedded default's loop); one
    account's failure does not stop the others."""
    summaries = []
    for account_id in accounts_to_reconcile():
        try:
            summary = account_reconcile_by_id(account_id, now=now)
        except Exception:
            logger.exception("reconciliation of account %s failed", account_id)
            continue
        if summary is not None:
            summaries.append(summary)
    return summaries


def account_reconcile_by_id(account_id: int, *, now: datetime | None = None) -> ReconcileSummary | None:
    """Reconcile one account by id; None when it is gone. An account deleted
    while its reconciliation runs (its rows cascade away under it) has
    nothing left to settle: that is not a failure, and no traceback is logged."""
    account = BrokerAccount.objects.filter(pk=account_id).first()
    if account is None:
        return None
    try:
        return account_reconcile(account=account, now=now)
    except ObjectDoesNotExist:
        if BrokerAccount.objects.filter(pk=account_id).exists():
            raise
        logger.info("account %s was deleted during its reconciliation", account_id)
        return None
