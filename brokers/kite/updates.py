"""Kite order updates (the ticker's ``{"type": "order"}`` frames and
postbacks) into the OMS, through the registry's sinks (adapters never import
the OMS).

Both carry the order's latest state in Kite's order shape, and no trade id.
An update with fills asks Kite for the order's trades (``GET
/orders/{order_id}/trades``, through the adapter) and hands them over as
fills first: deals are unique by (account, trade id), so a trade reported
again (by the other path, by the sync) is booked once; then the status,
which the OMS applies only as a legal step (the same status twice is
nothing). An update seen before (same order, status and filled quantity:
the ticker and the postback of one change, a replayed postback) is skipped
without asking Kite again, for ``SEEN_TTL`` seconds.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.core.cache import cache

from brokers.base import BrokerError
from brokers.kite.adapter import KiteBroker, order_view
from brokers.kite.client import KiteClient, kite_config_for
from brokers.models import BrokerAccount
from brokers.registry import broker_for, deliver_fills, deliver_order_updates
from core.masking import mask_text

logger = logging.getLogger(__name__)

SEEN_TTL = 24 * 3600  # an order's updates of one trading day


def ticker_credentials(account: BrokerAccount) -> tuple[str, str] | None:
    """(api_key, access_token) of a logged-in Kite account, else None (no ticker until someone logs in)."""
    config = kite_config_for(account)
    client = KiteClient(config)
    if not client.logged_in():
        return None
    return config.api_key, client.access_token()


def _seen_key(account_id: int, order: dict[str, Any]) -> str:
    ident = f"{order.get('order_id')}|{order.get('status')}|{order.get('filled_quantity')}"
    return f"kite:update:{account_id}:{hashlib.sha256(ident.encode()).hexdigest()[:32]}"


def order_update_deliver(account_id: int, order: dict[str, Any], *, via: str) -> bool:
    """Apply one update of the account's order (``via``: "ticker" or
    "postback", for the logs). False when skipped (seen before, not an
    order, the account gone); a failed trades look-up raises (the caller's
    retry, the sync or the other path settles it)."""
    order_id = str(order.get("order_id") or "")
    if not order_id or not order_id.isdigit() or len(order_id) > 40:
        logger.warning("Kite %s update without a usable order id skipped", via)
        return False
    key = _seen_key(account_id, order)
    if cache.get(key) is not None:
        return False
    account = BrokerAccount.objects.filter(pk=account_id).first()
    if account is None:
        return False
    view = order_view(order)
    if view.filled_qty > 0:
        broker = broker_for(account)
        if not isinstance(broker, KiteBroker):
            return False
        try:
            fills = broker.order_trades(order_id, client_order_id=view.client_order_id)
        except BrokerError as exc:
            logger.warning(
                "Kite %s update: trades of order %s of account %s not read (%s: %s)",
                via,
                order_id,
                account_id,
                type(exc).__name__,
                mask_text(str(exc))[:200],
            )
            raise
        deliver_fills(account_id, [f for f in fills if f.broker_trade_id])
    deliver_order_updates(account_id, [view])
    # Marked once applied: an update that failed half-way is applied again when it comes again.
    cache.set(key, 1, SEEN_TTL)
    return True
