"""Celery entry points of the broker machinery: thin, idempotent."""

from __future__ import annotations

from celery import shared_task

from brokers.base import BrokerRateLimited, BrokerTimeout, BrokerUnavailable


@shared_task(name="brokers.tokens_refresh", acks_late=True)
def broker_tokens_refresh_task() -> dict:
    """Refresh broker tokens nearing expiry, for every active account whose kind has them."""
    from brokers.connection import broker_tokens_refresh

    return broker_tokens_refresh().as_dict()


@shared_task(
    name="brokers.kite_order_update",
    acks_late=True,
    autoretry_for=(BrokerUnavailable, BrokerTimeout, BrokerRateLimited),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
)
def kite_order_update_task(account_id: int, order: dict) -> bool:
    """A Kite order update (a postback) into the OMS; idempotent (an update
    applied before is skipped), retried when Kite's trades do not answer."""
    from brokers.kite.updates import order_update_deliver

    return order_update_deliver(account_id, order, via="postback")
