"""The paper book follows an instrument renamed by marketdata (a simulated
instrument moved aside for a broker's: ``marketdata.instruments``)."""

from __future__ import annotations

from django.db.models import Q

from brokers.paper.models import PaperAccount, PaperFill, PaperOrder, PaperPosition
from brokers.paper.store import book_version_new


def paper_symbol_rename(old: str, new: str) -> dict[str, int]:
    """Rename ``old`` to ``new`` in every paper book, inside the caller's
    transaction. The books holding it are locked first (in key order, as
    every change of a book locks its PaperAccount row), so no matching or
    order in flight writes the old name back."""
    holders = (
        set(PaperOrder.objects.filter(symbol=old).values_list("account_id", flat=True))
        | set(PaperFill.objects.filter(symbol=old).values_list("account_id", flat=True))
        | set(PaperPosition.objects.filter(symbol=old).values_list("account_id", flat=True))
    )
    locked = list(PaperAccount.objects.select_for_update().filter(Q(pk__in=holders) | Q(market_state__has_key=old)).order_by("pk"))
    for paper in locked:
        renamed = {}
        for name in ("market_state", "working_totals"):  # both keyed by symbol
            if old in getattr(paper, name):
                state = dict(getattr(paper, name))
                state[new] = state.pop(old)
                renamed[name] = state
        # Every locked book changes (its orders, fills or positions below): a kept book is stale.
        PaperAccount.objects.filter(pk=paper.pk).update(**renamed, version=book_version_new())
    return {
        "paper orders": PaperOrder.objects.filter(symbol=old).update(symbol=new),
        "paper fills": PaperFill.objects.filter(symbol=old).update(symbol=new),
        "paper positions": PaperPosition.objects.filter(symbol=old).update(symbol=new),
    }
