"""``RISK_MAX_ORDERS_PER_SECOND``: at most that many orders of one account are
written in one calendar second (UTC, by the orders' ``created_at``), a batch
counting every order it holds.

The count is one atomic counter per account and second (``core.ratelimit``:
a Lua script on Redis in production, the local cache under a lock on the
embedded default), taken inside the account's write once the orders are
created: a batch that would pass the limit is refused whole, counts nothing,
and its transaction rolls back, so nothing is written. A take whose
transaction then fails is given back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from core.exceptions import DomainError
from core.ratelimit import rate_give_back, rate_take
from core.throttling import ThrottleUnavailable
from oms.errors import RiskRejected

logger = logging.getLogger(__name__)

# A second's counter outlives its second a little, so a clock a few hundred
# milliseconds apart between processes still finds it; it is never reused.
_COUNTER_LIFETIME = 2


class OrderRateLimited(RiskRejected):
    status_code = 429
    code = "order_rate_limited"
    default_message = "Too many orders on this account this second; retry after the time in Retry-After."
    permanent = False


@dataclass(frozen=True)
class OrderRateTake:
    key: str
    amount: int


def _limit() -> int:
    return int(settings.OMS_RISK["MAX_ORDERS_PER_SECOND"])


def order_rate_check_size(*, count: int) -> None:
    """Refuse at once a batch that no second could hold (before any write)."""
    limit = _limit()
    if limit and count > limit:
        raise OrderRateLimited(
            f"A batch of {count} orders is over the limit of {limit} orders per second; none was accepted.",
            fields={"orders": [f"At most {limit} orders per second."]},
            retry_after=1,  # as every 429; the batch must be split to pass
        )


def order_rate_take(*, account_id: int, amount: int, at: datetime) -> OrderRateTake | None:
    """Count ``amount`` orders of the account in the second of ``at`` (the
    orders' ``created_at``), or raise ``OrderRateLimited`` (429) counting none.
    ``None`` when the limit is lifted."""
    limit = _limit()
    if not limit:
        return None
    key = f"orders:{account_id}:{int(at.timestamp())}"
    try:
        hit = rate_take(key, _COUNTER_LIFETIME, amount=amount, limit=limit)
    except DomainError:
        raise
    except Exception:
        # The shared counter (Redis) is down: an order cannot be counted, so it is not taken.
        logger.warning("order rate counter unavailable", exc_info=True)
        raise ThrottleUnavailable("The order rate counter is unavailable; no order was accepted.") from None
    if not hit.taken:
        raise OrderRateLimited(
            f"Over the limit of {limit} orders per second on this account "
            f"({hit.count} this second, {amount} more asked); none was accepted.",
            retry_after=1,
        )
    return OrderRateTake(key=key, amount=amount)


def order_rate_give_back(take: OrderRateTake | None) -> None:
    """Uncount a take whose orders were not written after all."""
    if take is None:
        return
    try:
        rate_give_back(take.key, take.amount)
    except Exception:
        logger.warning("order rate counter unavailable: %s orders stay counted this second", take.amount, exc_info=True)
