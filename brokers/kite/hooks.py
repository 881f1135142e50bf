"""What the shared broker machinery asks of Kite accounts (registered in
apps.py): the token an account's credential holds, and whether a person must
log in to Kite before it trades."""

from __future__ import annotations

from typing import TYPE_CHECKING

from brokers.kite.client import kite_config_for, kite_token_key
from brokers.tokens import TokenKey, token_peek

if TYPE_CHECKING:
    from brokers.models import BrokerAccount


def kite_token_keys(account: BrokerAccount) -> list[TokenKey]:
    """The access token of the account's api_key (the login stores it)."""
    return [kite_token_key(kite_config_for(account))]


def kite_login_required(account: BrokerAccount) -> bool:
    """No valid access token: the account is ``login_required``. An account
    without its api_key is not_configured instead (not a login matter)."""
    if account.missing_credentials:
        return False
    return not token_peek(kite_token_key(kite_config_for(account)))
