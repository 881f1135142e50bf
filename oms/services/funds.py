"""Funds: per-currency balances and base-currency totals as the broker reports
them, their one wire form, and the projection the OMS keeps of them.

``funds_payload`` is the wire form of ``GET /accounts/{id}/funds`` and of the
``funds:<id>`` stream alike. Asking the broker (``funds_fetch``) also stores
the answer as the account's ``FundsProjection`` — after every funds change
(the publication after commit), every sync and every read — which the
pre-trade buying-power check reads instead of calling the broker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from brokers.base import Balance, BrokerError, Funds
from brokers.models import BrokerAccount
from brokers.registry import broker_for
from core.decimals import decimal_str
from core.money import money_quantize
from oms.models import FundsProjection

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuyingPower:
    """What may still be committed to new exposure, in ``currency`` (the funds' base)."""

    amount: Decimal
    currency: str


def funds_fetch(account: BrokerAccount) -> Funds | None:
    """Ask the broker (never inside a transaction) and store the projection."""
    try:
        funds = broker_for(account).funds()
    except BrokerError as exc:
        logger.warning("funds of account %s unavailable: %s", account.pk, exc.message)
        return None
    funds_store(account, funds)
    return funds


def funds_store(account: BrokerAccount, funds: Funds) -> None:
    """Keep ``funds`` as the account's projection (the last answer wins)."""
    row = {
        "currency": funds.currency,
        "buying_power": _buying_power(funds),
        "payload": funds_wire(account, funds),
        "updated_at": timezone.now(),
    }
    if FundsProjection.objects.filter(account_id=account.pk).update(**row):
        return
    try:
        with transaction.atomic():
            FundsProjection.objects.create(account_id=account.pk, **row)
    except IntegrityError:  # created meanwhile by another process
        FundsProjection.objects.filter(account_id=account.pk).update(**row)


def funds_buying_power(account: BrokerAccount) -> BuyingPower | None:
    """The projection's buying power (None before the broker first answered)."""
    row = FundsProjection.objects.filter(account_id=account.pk).values_list("buying_power", "currency").first()
    return None if row is None else BuyingPower(amount=row[0], currency=row[1])


def funds_payload(account: BrokerAccount) -> dict[str, Any] | None:
    """The funds now, in their wire form; None while the broker does not answer."""
    funds = funds_fetch(account)
    return None if funds is None else funds_wire(account, funds)


def _buying_power(funds: Funds) -> Decimal:
    return funds.buying_power if funds.buying_power is not None else funds.margin_available


def funds_wire(account: BrokerAccount, funds: Funds) -> dict[str, Any]:
    """Today's keys as base-currency totals (``currency``), plus ``balances``
    per currency, ``buying_power`` and ``rates`` (one unit of each currency
    in the base currency). Money is rounded to each currency's minor units;
    a broker that reports one currency answers it as the one balance."""
    base = funds.currency
    balances = funds.balances or (Balance(currency=base, cash=funds.cash, available=funds.margin_available),)
    rates = dict(funds.rates) or {base: Decimal(1)}
    return {
        "account_id": account.pk,
        "currency": base,
        "cash": _money(funds.cash, base),
        "margin_used": _money(funds.margin_used, base),
        "margin_available": _money(funds.margin_available, base),
        "equity": _money(funds.equity, base),
        "unrealized_pnl": _money(funds.unrealized_pnl, base),
        "balances": [
            {"currency": b.currency, "cash": _money(b.cash, b.currency), "available": _money(b.available, b.currency)} for b in balances
        ],
        "buying_power": _money(_buying_power(funds), base),
        "rates": {currency: decimal_str(rate) for currency, rate in sorted(rates.items())},
    }


def _money(amount: Decimal | None, currency: str) -> str | None:
    return None if amount is None else decimal_str(money_quantize(amount, currency))
