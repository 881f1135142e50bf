"""Reads behind the workspace pages and API: a fixed number of queries, never one per row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.db.models import Prefetch, Q, QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from accounts.models import ApiKey, User
from brokers.connection import broker_account_feed_state, broker_account_token_states, broker_accounts_tokens_preloaded
from brokers.models import BrokerAccount
from brokers.services import broker_account_status
from workspaces.models import Watchlist, WatchlistItem, Workspace


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


def workspaces_for_user(*, user: User) -> QuerySet[Workspace]:
    return Workspace.objects.filter(owner=user).order_by("id")


def with_symbols(qs: QuerySet[Watchlist]) -> QuerySet[Watchlist]:
    # One more query for every watchlist's items, in order, with their symbols.
    items = (
        WatchlistItem.objects.select_related("instrument").only("watchlist_id", "position", "instrument__symbol").order_by("position", "id")
    )
    return qs.prefetch_related(Prefetch("items", queryset=items, to_attr="ordered_items"))


def watchlists_for_user(*, user: User) -> QuerySet[Watchlist]:
    return with_symbols(Watchlist.objects.filter(owner=user).order_by("id"))


def watchlist_with_symbols(*, watchlist_id: int) -> Watchlist:
    return with_symbols(Watchlist.objects.filter(pk=watchlist_id)).get()


def watchlist_symbols(watchlist: Watchlist) -> list[str]:
    """The symbols in order (from the prefetch when there is one)."""
    items = getattr(watchlist, "ordered_items", None)
    if items is None:
        return list(watchlist.items.order_by("position", "id").values_list("instrument__symbol", flat=True))
    return [item.instrument.symbol for item in items]


@dataclass(frozen=True)
class AccountRow:
    """One row of the broker-accounts page: the account and its connection
    health as ``brokers.connection`` reports it (never a secret)."""

    account: BrokerAccount
    status: str
    tokens: list[dict[str, Any]]
    feed: dict[str, Any] | None
    login_url: str | None

    @property
    def token_expires_at(self) -> datetime | None:
        expiries = [t["expires_at"] for t in self.tokens if t.get("expires_at")]
        return min(expiries) if expiries else None

    @property
    def tokens_valid(self) -> bool | None:
        return all(t["valid"] for t in self.tokens) if self.tokens else None


#: Brokers whose traders log in at the broker to start a session, and the URL
#: name of that login (it exists once the broker's adapter is installed).
BROKER_LOGIN_URL_NAMES = {"kite": "kite_login"}


def broker_login_url(account: BrokerAccount, *, back: str = "/broker-accounts") -> str | None:
    """Where the trader logs in at the account's broker (and comes back to
    ``back``), or None when the broker needs no login or the project has no
    such page."""
    name = BROKER_LOGIN_URL_NAMES.get(account.kind)
    if name is None:
        return None
    try:
        return f"{reverse(name, kwargs={'pk': account.pk})}?{urlencode({'next': back})}"
    except NoReverseMatch:
        return None


def account_page_row(account: BrokerAccount) -> AccountRow:
    return AccountRow(
        account=account,
        status=broker_account_status(account),
        tokens=broker_account_token_states(account=account),
        feed=broker_account_feed_state(account=account),
        login_url=broker_login_url(account),
    )


def account_page_rows(*, user: User) -> list[AccountRow]:
    """The user's accounts for the page: one query for the accounts, one for
    the broker tokens of them all (KIS, Kite: their states and login checks)."""
    accounts = list(accounts_for_user(user=user))
    with broker_accounts_tokens_preloaded(accounts):
        return [account_page_row(account) for account in accounts]


def api_keys_for_user(*, user: User) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(user=user).order_by("-id")
