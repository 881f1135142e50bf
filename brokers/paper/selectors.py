"""Reads of the paper venue's book."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import django_filters
from django.db import transaction
from django.db.models import QuerySet

from brokers.paper.book import MARGIN_PRODUCT_TYPES, FundsView, Order
from brokers.paper.engine import PaperEngine
from brokers.paper.models import LedgerEntryKind, PaperFill, PaperLedgerEntry, PaperOrder, PaperPosition
from brokers.paper.services import engine_rates_refresh, paper_account_lock
from brokers.paper.store import book_kept, book_load, order_from_row
from core.filters import IsoDateTimeFilter
from marketdata.models import Instrument
from marketdata.quotes import quotes_get


def paper_order_get(*, account_id: int, client_order_id: str | None = None, broker_order_id: str | None = None) -> Order | None:
    """One order by broker order id (first) or client order id, or None."""
    rows = PaperOrder.objects.filter(account_id=account_id)
    row = None
    if broker_order_id:
        row = rows.filter(broker_order_id=broker_order_id).first()
    if row is None and client_order_id:
        row = rows.filter(client_order_id=client_order_id).first()
    return None if row is None else order_from_row(row)


def paper_open_orders(*, account_id: int) -> list[Order]:
    return [order_from_row(r) for r in PaperOrder.objects.filter(account_id=account_id, working=True).order_by("seq")]


def paper_orders_since(*, account_id: int, since: datetime) -> list[Order]:
    """Orders created or changed at or after ``since`` (updated_at covers both)."""
    rows = PaperOrder.objects.filter(account_id=account_id, updated_at__gte=since).order_by("seq")
    return [order_from_row(r) for r in rows]


def paper_fills_since(*, account_id: int, since: datetime) -> list[PaperFill]:
    return list(PaperFill.objects.filter(account_id=account_id, executed_at__gte=since).order_by("executed_at", "id"))


@dataclass(frozen=True)
class PositionView:
    symbol: str
    qty: Decimal
    avg_price: Decimal
    realized_pnl: Decimal
    multiplier: Decimal
    type: str
    last_price: Decimal | None

    @property
    def unrealized_pnl(self) -> Decimal | None:
        if self.last_price is None:
            return None
        return (self.last_price - self.avg_price) * self.qty * self.multiplier


def paper_positions(*, account_id: int) -> list[PositionView]:
    """Open positions with their instrument's terms and the latest quote's last price."""
    rows = list(PaperPosition.objects.filter(account_id=account_id).exclude(qty=0).order_by("symbol"))
    terms = dict(
        (symbol, (multiplier, kind))
        for symbol, multiplier, kind in Instrument.objects.filter(symbol__in=[r.symbol for r in rows]).values_list(
            "symbol", "multiplier", "type"
        )
    )
    quotes = quotes_get(r.symbol for r in rows)
    out = []
    for r in rows:
        multiplier, kind = terms.get(r.symbol, (Decimal(1), "stock"))
        quote = quotes.get(r.symbol)
        out.append(
            PositionView(
                symbol=r.symbol,
                qty=r.qty,
                avg_price=r.avg_price,
                realized_pnl=r.realized_pnl,
                multiplier=multiplier,
                type=kind,
                last_price=None if quote is None else quote.last,
            )
        )
    return out


def paper_holdings(*, account_id: int) -> list[PositionView]:
    """Long positions in cash products (what the account owns outright)."""
    return [p for p in paper_positions(account_id=account_id) if p.qty > 0 and p.type not in MARGIN_PRODUCT_TYPES]


def paper_funds(*, account_id: int) -> FundsView:
    """Balances per currency; cash, equity, margin and buying power in the base
    currency, positions valued at the latest quotes and currencies at the latest
    FX rates (the last known when stale). Read under the book's lock so
    balances, positions and reservations agree; or, when this thread has
    just saved the book and it has not changed since (``store.book_kept``),
    from that book without a reload."""
    kept = book_kept(account_id)
    if kept is not None:
        return _funds_of(kept)
    with transaction.atomic():
        # No order is needed, only the sum of their reservations (order margin).
        return _funds_of(book_load(paper_account_lock(account_id=account_id), orders_of=()).engine)


def _funds_of(engine: PaperEngine) -> FundsView:
    held = [symbol for symbol, p in engine.positions.items() if p.qty]
    marks = {symbol: q.last for symbol, q in quotes_get(held).items()}
    engine_rates_refresh(engine, allow_stale=True)
    return engine.funds(marks)


def paper_ledger_entries(*, account_id: int) -> QuerySet[PaperLedgerEntry]:
    """The account's ledger, in booking order (the id)."""
    return PaperLedgerEntry.objects.filter(account_id=account_id).order_by("id")


class LedgerFilter(django_filters.FilterSet):
    """``currency``, ``kind``, and ``from`` (inclusive) / ``to`` (exclusive) on ``created_at``."""

    currency = django_filters.CharFilter(field_name="currency", help_text="Exact currency code, e.g. KRW.")
    kind = django_filters.ChoiceFilter(field_name="kind", choices=LedgerEntryKind.choices)

    class Meta:
        model = PaperLedgerEntry
        fields = ["currency", "kind"]


# ``from`` is a Python keyword, so the two filters are added after the class body.
LedgerFilter.base_filters["from"] = IsoDateTimeFilter(
    field_name="created_at", lookup_expr="gte", help_text="created_at at or after this ISO 8601 time."
)
LedgerFilter.base_filters["to"] = IsoDateTimeFilter(
    field_name="created_at", lookup_expr="lt", help_text="created_at before this ISO 8601 time."
)
