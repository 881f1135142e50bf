"""Account sync: make the terminal agree with what the broker holds.

Per account, on a schedule (``oms.accounts_sync_all``) and on demand
(``POST /accounts/{id}/sync``, the admin's "Sync now"), one at a time per
account (``named_lock("account-sync:<id>")``: a sync finding one running
skips, it does not queue up):

1. ask the broker what it holds (holdings and positions) and its funds (stored
   as the account's funds projection);
2. reconcile orders and the day's fills (``account_reconcile``: missing fills
   booked once, the broker's own orders imported as ``source=external``);
3. ask again what it holds. A symbol whose quantity moved between 1 and 3,
   or whose terminal quantity moved while the broker was asked the second
   time (a fill the broker's answer may or may not hold), was trading while
   we looked: it is left for the next sync;
4. the first sync of an account (``initial_synced_at`` unset) books, for each
   symbol, the difference between the broker's quantity and the terminal's as
   an ``external`` deal at the broker's average price: the position opens as
   the broker holds it, so selling a holding reduces it rather than opening a
   short, and ``positions_rebuild`` replays it like any deal. Later syncs
   only compare: a difference (drift) is logged, counted in ``/metrics`` and
   noted on the account, never silently overwritten.

Broker calls happen outside any transaction; each booking is a short write
under the account lock. The outcome (time, duration, masked error) is kept
on the account and counted per kind and outcome in ``/metrics``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone

from brokers.base import Broker, BrokerError
from brokers.connection import broker_account_sync_notes_set
from brokers.models import AccountStatus, BrokerAccount, BrokerKind
from brokers.registry import adapter_registered, broker_for
from brokers.services import broker_account_mask, broker_account_record_initial_sync, broker_account_record_sync_run
from core.decimals import decimal_str
from core.exceptions import DomainError
from marketdata.instruments import instrument_ensure_for_venue
from marketdata.models import Instrument
from marketdata.quotes import quote_get
from marketdata.venues import symbol_split, venue_traded_by
from oms.models import PRICE_SCALE, DealKind, Position, PositionSide, PositionStatus, Side
from oms.services.funds import funds_store
from oms.services.positions import position_book_deal, position_for_deal
from oms.services.reconcile import account_reconcile
from oms.services.tx import AccountTx

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
LOCK_WAIT = 0.05  # seconds: a sync already running is skipped, not waited for
COUNTER_KEY = "account-sync:count:{kind}:{outcome}"
DRIFT_KEY = "account-sync:drift:{kind}"
OUTCOMES = ("ok", "error", "skipped")


# Per symbol, the terminal's open quantity (signed) and average price.
Terminal = dict[str, tuple[Decimal, Decimal]]


@dataclass(frozen=True)
class Held:
    """What the broker holds of one symbol: signed quantity (long > 0) and average price."""

    qty: Decimal
    avg_price: Decimal
    name: str = ""


@dataclass
class SyncSummary:
    account_id: int
    outcome: str = "ok"  # ok | error | skipped | missing
    message: str = ""
    initial: bool = False  # this run booked (or tried to book) what the broker held
    started_at: datetime | None = None
    duration: float = 0.0
    error: str = ""
    held: int = 0  # symbols held at the broker
    booked: list[dict[str, Any]] = field(default_factory=list)  # external deals booked
    drift: list[dict[str, Any]] = field(default_factory=list)
    moving: list[str] = field(default_factory=list)  # held quantity changed while syncing
    reconcile: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat() if self.started_at else None
        return data


# --- one account --------------------------------------------------------------------------------


def account_sync(*, account_id: int) -> SyncSummary:
    """Sync one account with its broker (see the module docstring). Never
    raises for a broker failure: the summary and the account say what failed."""
    from brokers.locks import LockNotAcquired, named_lock

    account = BrokerAccount.objects.filter(pk=account_id).first()
    if account is None:
        return SyncSummary(account_id=account_id, outcome="missing", message="No such account.")
    ttl = float(settings.ACCOUNT_SYNC_TIME_LIMIT) + 30.0  # outlives the task's time limit
    lock = named_lock(f"account-sync:{account_id}", ttl=ttl, wait=LOCK_WAIT)
    try:
        lock.__enter__()
    except LockNotAcquired:  # only the lock's own: the sync's broker errors are caught inside
        logger.info("sync of account %s skipped: one is running", account_id)
        _count(account.kind, "skipped")
        return SyncSummary(account_id=account_id, outcome="skipped", message="A sync of this account is running.")
    try:
        return _sync(account)
    except ObjectDoesNotExist:
        if BrokerAccount.objects.filter(pk=account_id).exists():
            raise
        # Deleted while its sync ran (its rows cascaded away under it): nothing left to sync.
        logger.info("account %s was deleted during its sync", account_id)
        return SyncSummary(account_id=account_id, outcome="missing", message="No such account.")
    finally:
        lock.__exit__(None, None, None)


def _sync(account: BrokerAccount) -> SyncSummary:
    started, clock = timezone.now(), time.monotonic()
    summary = SyncSummary(account_id=account.pk, initial=account.initial_synced_at is None, started_at=started)
    try:
        broker = broker_for(account)
        before = _broker_holds(broker)
        funds_store(account, broker.funds())
        reconciled = account_reconcile(account=account, fetch_funds=False)
        summary.reconcile = reconciled.as_dict()
        if not reconciled.ok:
            raise _Failed(f"Reconciliation: {reconciled.error}")
        seen = _terminal_holds(account.pk)  # read before the second look: a fill booked after it shows
        after = _broker_holds(broker)
        summary.held = len(after)
        stable = {symbol for symbol in set(before) | set(after) if before.get(symbol) == after.get(symbol)}
        moving = (set(before) | set(after)) - stable
        unknown = _ensure_instruments(account, after)
        stable -= unknown
        moving |= unknown
        if summary.initial:
            summary.booked, booked_moving = _book_external(account, after, stable, seen)
        else:
            summary.drift, booked_moving = _drift(account, after, stable, seen)
        summary.moving = sorted(moving | booked_moving)
        if summary.initial and not summary.moving:
            broker_account_record_initial_sync(account=account, at=timezone.now())
    except (BrokerError, _Failed) as exc:
        summary.outcome = "error"
        summary.error = broker_account_mask(account=account, text=_describe(exc))
        logger.warning("sync of account %s failed: %s", account.pk, summary.error)
    except Exception as exc:
        # Not the broker's doing: a bug. Recorded like a failure (the account
        # shows it; other accounts go on) and logged with its traceback.
        summary.outcome = "error"
        summary.error = broker_account_mask(account=account, text=f"{type(exc).__name__}: {exc}")
        logger.exception("sync of account %s failed", account.pk)
    summary.duration = round(time.monotonic() - clock, 3)
    broker_account_record_sync_run(account=account, at=started, duration=summary.duration, error=summary.error)
    broker_account_sync_notes_set(account=account, notes=_notes(summary))
    _count(account.kind, summary.outcome)
    if summary.drift:
        _count_drift(account.kind, len(summary.drift))
    return summary


class _Failed(Exception):
    """A step reported its failure (reconciliation records its own error)."""


def _describe(exc: Exception) -> str:
    if isinstance(exc, BrokerError):
        return f"{type(exc).__name__}: {exc.message or exc}"
    return str(exc)


def _broker_holds(broker: Broker) -> dict[str, Held]:
    """Per symbol, what the broker holds: its positions (signed), else its
    holdings (a broker may report a cash holding in both)."""
    held: dict[str, Held] = {}
    for holding in broker.holdings():
        if holding.qty:
            held[holding.symbol] = Held(qty=Decimal(holding.qty), avg_price=Decimal(holding.avg_price or 0), name=holding.name)
    for position in broker.positions():
        if position.qty:
            held[position.symbol] = Held(qty=Decimal(position.qty), avg_price=Decimal(position.avg_price or 0))
    return held


def _ensure_instruments(account: BrokerAccount, held: dict[str, Held]) -> set[str]:
    """Create the instrument of each symbol the broker holds that the terminal
    does not know yet (``VENUE:CODE`` of the account's broker, with the venue's
    currency), so its position is booked in the right money. The symbols that
    cannot be created are left unbooked (named in the sync's notes), never
    booked as an instrument of unknown currency."""
    known = set(Instrument.objects.filter(symbol__in=list(held)).values_list("symbol", flat=True))
    unknown: set[str] = set()
    for symbol in sorted(set(held) - known):
        parts = symbol_split(symbol)
        if parts is None or not venue_traded_by(parts[0], kind=account.kind, exchange_id=account.exchange_id):
            logger.warning("account %s holds %r, which names no venue of its broker: not booked", account.pk, symbol)
            unknown.add(symbol)
            continue
        try:
            instrument_ensure_for_venue(parts[0], parts[1], name=held[symbol].name)
        except DomainError as exc:
            logger.warning("account %s holds %r: no instrument (%s): not booked", account.pk, symbol, exc.message)
            unknown.add(symbol)
    return unknown


def _terminal_holds(account_id: int) -> Terminal:
    """Per symbol, the terminal's open quantity (signed, summed over strategies
    and positions) and the average price of the largest position."""
    totals: dict[str, tuple[Decimal, Decimal, Decimal]] = {}
    rows = Position.objects.filter(account_id=account_id, status=PositionStatus.OPEN).values_list("symbol", "side", "qty", "avg_price")
    for symbol, side, qty, avg_price in rows:
        signed = qty if side == PositionSide.LONG else -qty
        total, price, largest = totals.get(symbol, (ZERO, ZERO, ZERO))
        if qty > largest:
            price, largest = avg_price, qty
        totals[symbol] = (total + signed, price, largest)
    return {symbol: (total, price) for symbol, (total, price, _) in totals.items()}


def _compared(stable: set[str], held: dict[str, Held], ours: Terminal, seen: Terminal) -> tuple[list[str], set[str]]:
    """The symbols to compare: stable at the broker and unchanged in the
    terminal since ``seen`` (a fill booked meanwhile may or may not be in the
    broker's answer); and those that changed here (compared next time)."""
    changed = {s for s in set(ours) | set(seen) if ours.get(s, (ZERO, ZERO))[0] != seen.get(s, (ZERO, ZERO))[0]}
    return sorted((stable & (set(held) | set(ours))) - changed), changed


def _book_external(
    account: BrokerAccount, held: dict[str, Held], stable: set[str], seen: Terminal
) -> tuple[list[dict[str, Any]], set[str]]:
    """The first sync: book the difference between the broker's and the
    terminal's quantity of each stable symbol as an external deal, under the
    account lock (the terminal's side read there, so nothing is booked twice)."""
    booked: list[dict[str, Any]] = []
    now = timezone.now()
    with AccountTx(account.pk) as tx:
        ours = _terminal_holds(account.pk)
        symbols, changed = _compared(stable, held, ours, seen)
        for symbol in symbols:
            broker_qty = held[symbol].qty if symbol in held else ZERO
            our_qty, our_price = ours.get(symbol, (ZERO, ZERO))
            difference = broker_qty - our_qty
            if not difference:
                continue
            side = Side.BUY if difference > 0 else Side.SELL
            price = _external_price(symbol, held.get(symbol), our_qty, our_price)
            position = position_for_deal(tx.account, symbol=symbol, strategy_id="", side=side, position_id=None, at=now)
            deal = position_book_deal(
                tx, position, side=side, qty=abs(difference), price=price, at=now, kind=DealKind.EXTERNAL, strategy_id=""
            )
            logger.info("account %s: %s %s %s @ %s held at the broker booked as external", account.pk, side, abs(difference), symbol, price)
            booked.append(
                {"deal_id": deal.pk, "symbol": symbol, "side": side, "qty": decimal_str(abs(difference)), "price": decimal_str(price)}
            )
        if booked:
            tx.funds_changed()
    return booked, changed


def _external_price(symbol: str, held: Held | None, our_qty: Decimal, our_price: Decimal) -> Decimal:
    """The price of the part the broker holds and the terminal does not: the
    broker's average price, less what the terminal's own part cost when it
    holds some on the same side (so the position ends at the broker's
    average); for a holding gone by now (sold today before the first sync)
    the terminal's own average, so the day's sale realizes no invented P&L;
    else the last quote."""
    if held is not None and held.avg_price > 0:
        same_side = our_qty and (our_qty > 0) == (held.qty > 0) and abs(held.qty) > abs(our_qty)
        if same_side:
            rest = (held.qty * held.avg_price - our_qty * our_price) / (held.qty - our_qty)
            if rest > 0:
                return rest.quantize(PRICE_SCALE)
        return held.avg_price
    if our_price > 0:
        return our_price
    quote = quote_get(symbol)
    return quote.last if quote is not None and quote.last else ZERO


def _drift(account: BrokerAccount, held: dict[str, Held], stable: set[str], seen: Terminal) -> tuple[list[dict[str, Any]], set[str]]:
    """Later syncs: every stable symbol whose quantity differs, logged."""
    ours = _terminal_holds(account.pk)
    drift = []
    symbols, changed = _compared(stable, held, ours, seen)
    for symbol in symbols:
        broker_qty = held[symbol].qty if symbol in held else ZERO
        our_qty = ours.get(symbol, (ZERO, ZERO))[0]
        if broker_qty != our_qty:
            drift.append({"symbol": symbol, "broker_qty": decimal_str(broker_qty), "terminal_qty": decimal_str(our_qty)})
            logger.warning("account %s: %s drift: the broker holds %s, the terminal %s", account.pk, symbol, broker_qty, our_qty)
    return drift, changed


def _notes(summary: SyncSummary) -> list[str]:
    notes = [f"Drift: {d['symbol']}: the broker holds {d['broker_qty']}, the terminal {d['terminal_qty']}." for d in summary.drift]
    if summary.moving:
        notes.append(f"Held quantity moved while syncing (compared next time): {', '.join(summary.moving[:20])}.")
    notes.extend(f"Booked as external: {b['side']} {b['qty']} {b['symbol']} @ {b['price']}." for b in summary.booked)
    return notes


# --- counters for /metrics (shared across processes through the cache) ---------------------------


def _count(kind: str, outcome: str) -> None:
    _incr(COUNTER_KEY.format(kind=kind, outcome=outcome), 1)


def _count_drift(kind: str, n: int) -> None:
    _incr(DRIFT_KEY.format(kind=kind), n)


def _incr(key: str, n: int) -> None:
    try:
        cache.add(key, 0, timeout=None)
        cache.incr(key, n)
    except Exception:
        logger.warning("counter %s not counted", key, exc_info=True)


def sync_counters() -> dict[str, Any]:
    """Syncs run per (kind, outcome) and drifted symbols seen per kind."""
    keys = {(kind, outcome): COUNTER_KEY.format(kind=kind, outcome=outcome) for kind in BrokerKind.values for outcome in OUTCOMES}
    drift_keys = {kind: DRIFT_KEY.format(kind=kind) for kind in BrokerKind.values}
    values = cache.get_many([*keys.values(), *drift_keys.values()])
    return {
        "syncs": {pair: int(values.get(key, 0)) for pair, key in keys.items()},
        "drift": {kind: int(values.get(key, 0)) for kind, key in drift_keys.items()},
    }


# --- every account, and on demand -----------------------------------------------------------------


def accounts_to_sync() -> list[int]:
    """Real accounts a broker can be asked about (paper accounts are the
    terminal's own venue: synced on demand only)."""
    rows = (
        BrokerAccount.objects.filter(status__in=(AccountStatus.ACTIVE, AccountStatus.ERROR))
        .exclude(kind=BrokerKind.PAPER)
        .order_by("id")
        .values_list("pk", "kind")
    )
    return [pk for pk, kind in rows if adapter_registered(kind)]


def accounts_sync_health() -> dict[str, dict[str, float]]:
    """Per kind, over the accounts the schedule syncs: how many, never synced,
    the oldest last sync's age, the longest last duration, failing."""
    now = timezone.now()
    health: dict[str, dict[str, float]] = {}
    rows = BrokerAccount.objects.filter(pk__in=accounts_to_sync()).values_list(
        "kind", "last_synced_at", "last_sync_duration", "last_sync_error"
    )
    for kind, synced_at, duration, error in rows:
        row = health.setdefault(kind, {"accounts": 0, "never_synced": 0, "oldest_age": 0.0, "max_duration": 0.0, "failing": 0})
        row["accounts"] += 1
        if synced_at is None:
            row["never_synced"] += 1
        else:
            row["oldest_age"] = max(row["oldest_age"], round((now - synced_at).total_seconds(), 1))
        row["max_duration"] = max(row["max_duration"], duration or 0.0)
        row["failing"] += 1 if error else 0
    return health


def accounts_sync_all() -> list[SyncSummary]:
    """Sync every real account in turn (the embedded default's loop); one
    account's failure never stops the others."""
    summaries = []
    for account_id in accounts_to_sync():
        try:
            summaries.append(account_sync(account_id=account_id))
        except Exception:
            logger.exception("sync of account %s failed", account_id)
    return summaries


def account_sync_request(account_id: int) -> dict[str, Any] | None:
    """A sync asked for now: run here when Celery is eager (the embedded
    default: its summary), else queued for a worker (None)."""
    from celery import current_app

    from oms.tasks import account_sync_task

    if current_app.conf.task_always_eager:
        return account_sync(account_id=account_id).as_dict()
    try:
        account_sync_task.delay(account_id)
    except Exception as exc:  # the Celery broker is down: say so, never a 500
        logger.exception("sync of account %s not queued", account_id)
        raise DomainError(
            "The sync could not be queued; try again shortly.", code="sync_unavailable", status_code=503, retry_after=5
        ) from exc
    return None
