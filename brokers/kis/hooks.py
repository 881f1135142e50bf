"""What the shared broker machinery asks of KIS accounts (registered in apps.py):
which tokens an account's credential holds, and refreshing them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from brokers.kis.client import ACCESS_TOKEN, APPROVAL_KEY, KisClient, kis_config_for
from brokers.tokens import TokenKey, token_state

if TYPE_CHECKING:
    from brokers.models import BrokerAccount

TOKEN_NAMES = (ACCESS_TOKEN, APPROVAL_KEY)


def kis_token_keys(account: BrokerAccount) -> list[TokenKey]:
    """The access token and the WebSocket approval key of the account's app key."""
    config = kis_config_for(account)
    return [TokenKey(kind="kis", environment=config.environment, credential=config.app_key, name=name) for name in TOKEN_NAMES]


def kis_tokens_refresh(account: BrokerAccount, *, force: bool) -> list[str]:
    """``force``: issue both now (``TokenIssueTooSoon`` inside KIS's minute);
    else only those missing or inside the refresh margin. The names refreshed."""
    client = KisClient(kis_config_for(account))
    if force:
        client.refresh_access_token()
        client.refresh_approval_key()
        return list(TOKEN_NAMES)
    before = {key.name: token_state(key).issued_at for key in kis_token_keys(account)}
    client.access_token()
    client.approval_key()
    after = {key.name: token_state(key).issued_at for key in kis_token_keys(account)}
    return [name for name in TOKEN_NAMES if after[name] != before[name]]
