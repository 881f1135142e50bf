"""Funds (cash, margin, equity) as the broker reports them."""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import cache

from brokers.base import BrokerError, Funds
from brokers.models import BrokerAccount
from brokers.registry import broker_for
from core.decimals import decimal_str

logger = logging.getLogger(__name__)

_CACHE = "oms:funds:"


def funds_fetch(account: BrokerAccount) -> Funds | None:
    """Ask the broker (never inside a transaction); cache the answer."""
    try:
        funds = broker_for(account).funds()
    except BrokerError as exc:
        logger.warning("funds of account %s unavailable: %s", account.pk, exc.message)
        return None
    cache.set(_CACHE + str(account.pk), funds, timeout=None)
    return funds


def funds_snapshot(account: BrokerAccount) -> Funds | None:
    """The last known funds (the paper venue is local: always fresh)."""
    if account.kind == "paper":
        return funds_fetch(account)
    return cache.get(_CACHE + str(account.pk))


def funds_payload(account: BrokerAccount) -> dict[str, Any] | None:
    funds = funds_fetch(account)
    if funds is None:
        return None
    return {
        "account_id": account.pk,
        "currency": funds.currency,
        "cash": decimal_str(funds.cash),
        "margin_used": decimal_str(funds.margin_used),
        "margin_available": decimal_str(funds.margin_available),
        "equity": decimal_str(funds.equity),
    }
