"""The OMS's Celery tasks, enqueued after commit: one typed function per task.

Each runs after its write committed (``AccountTx.on_commit``): the rows exist
whatever happens here. An error (Redis down; eager, an adapter bug) must not
turn into a failed request that a client retries as a second order, so it is
logged: the sweeper sends orders left unsent, reconciliation settles a cancel
or change left pending.
"""

from __future__ import annotations

import logging

from oms.tasks import order_cancel_task, order_change_task, orders_submit_task

logger = logging.getLogger(__name__)


def enqueue_submit(order_ids: list[int]) -> None:
    """Send these pending_new orders (one task for a batch)."""
    try:
        orders_submit_task.delay(order_ids)
    except Exception:
        logger.exception("send of orders %s not enqueued; the sweeper will send them", order_ids)


def enqueue_cancel(order_id: int) -> None:
    """Ask the broker to cancel this pending_cancel order."""
    try:
        order_cancel_task.delay(order_id)
    except Exception:
        logger.exception("cancel of order %s not enqueued; reconciliation will ask again", order_id)


def enqueue_change(order_id: int, changes: dict[str, str]) -> None:
    """Ask the broker to apply ``changes`` (qty/price/stop_price as strings) to this pending_change order."""
    try:
        order_change_task.delay(order_id, changes)
    except Exception:
        logger.exception("change of order %s not enqueued; reconciliation will settle it", order_id)
