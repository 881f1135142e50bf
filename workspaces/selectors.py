from __future__ import annotations

from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import ApiKey, User
from brokers.models import BrokerAccount
from brokers.services import broker_account_status


def accounts_for_user(*, user: User) -> QuerySet[BrokerAccount]:
    return BrokerAccount.objects.filter(owner=user).order_by("id")


def account_rows_for_user(*, user: User) -> list[tuple[BrokerAccount, str]]:
    """The user's accounts with their status as the API reads it (an account
    no adapter serves is ``not_configured``, whatever is stored)."""
    return [(account, broker_account_status(account)) for account in accounts_for_user(user=user)]


def active_api_key_count(*, user: User) -> int:
    return (
        ApiKey.objects.filter(user=user, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .count()
    )
