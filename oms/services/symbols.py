"""The OMS follows an instrument renamed by marketdata (a simulated
instrument moved aside for a broker's: ``marketdata.instruments``)."""

from __future__ import annotations

from oms.models import OPEN_STATUSES, Deal, Order, Position, PositionStatus
from oms.services.tx import AccountTx


def orders_symbol_rename(old: str, new: str) -> dict[str, int]:
    """Rename ``old`` to ``new`` in orders, deals and positions, inside the
    caller's transaction: per account, in key order, under the account row's
    lock like every OMS write, and its open orders and positions published
    on ``orders:``/``positions:`` once the caller commits."""
    account_ids = (
        set(Order.objects.filter(symbol=old).values_list("account_id", flat=True))
        | set(Deal.objects.filter(symbol=old).values_list("account_id", flat=True))
        | set(Position.objects.filter(symbol=old).values_list("account_id", flat=True))
    )
    moved = {"orders": 0, "deals": 0, "positions": 0}
    for account_id in sorted(account_ids):
        with AccountTx(account_id) as tx:
            open_orders = list(
                Order.objects.filter(account_id=account_id, symbol=old, status__in=OPEN_STATUSES).values_list("pk", flat=True)
            )
            open_positions = list(
                Position.objects.filter(account_id=account_id, symbol=old, status=PositionStatus.OPEN).values_list("pk", flat=True)
            )
            moved["orders"] += Order.objects.filter(account_id=account_id, symbol=old).update(symbol=new)
            moved["deals"] += Deal.objects.filter(account_id=account_id, symbol=old).update(symbol=new)
            moved["positions"] += Position.objects.filter(account_id=account_id, symbol=old).update(symbol=new)
            for order in Order.objects.filter(pk__in=open_orders).order_by("pk"):
                tx.order_changed(order)
            for position in Position.objects.filter(pk__in=open_positions).order_by("pk"):
                tx.position_changed(position)
    return moved
