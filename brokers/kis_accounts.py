"""KIS accounts as their owners manage them: which account a request means,
the state of its access token and WebSocket approval key (never their values),
forced refreshes under KIS's one-issue-a-minute rule, and the diagnostics of
``manage.py kis_check``.

The adapter (``brokers.kis``) speaks to KIS and never touches these rules;
this module picks the account, checks it may be asked, and turns the broker's
errors into the one error shape (``brokers.errors.domain_error_for``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from accounts.models import User
from brokers.base import BrokerError
from brokers.errors import domain_error_for
from brokers.kis import protocol
from brokers.kis.adapter import KisBroker
from brokers.kis.client import KisClient, kis_config_for
from brokers.models import BrokerAccount, BrokerKind
from brokers.services import broker_account_get_for_user, broker_account_mask
from core.exceptions import Conflict, NotFound

logger = logging.getLogger(__name__)

CHECK_CODE = "005930"  # Samsung Electronics: the upstream diagnostics' price query


def kis_account_for_user(*, user: User, account_id: int | None = None) -> BrokerAccount:
    """The KIS account a request means: ``account_id`` when given (another
    user's answers 404), else the caller's only KIS account. With none or
    several, 409 asks for ``?account_id=``."""
    if account_id is not None:
        account = broker_account_get_for_user(user=user, account_id=account_id)
        if account.kind != BrokerKind.KIS:
            raise NotFound(f"Account {account.pk} is a {account.kind} account, not a KIS account.")
        return account
    ids = list(BrokerAccount.objects.filter(owner=user, kind=BrokerKind.KIS).values_list("pk", flat=True)[:21])
    if len(ids) == 1:
        return BrokerAccount.objects.get(pk=ids[0])
    if not ids:
        raise Conflict(
            "You have no KIS account: add one (README, KIS accounts), or name one with ?account_id=.",
            code="kis_account_required",
            fields={"account_id": ["No KIS account."]},
        )
    shown = ", ".join(str(pk) for pk in ids[:20]) + (", ..." if len(ids) > 20 else "")
    raise Conflict(
        f"You have several KIS accounts: name one with ?account_id= (one of {shown}).",
        code="kis_account_ambiguous",
        fields={"account_id": [f"Required: one of {shown}."]},
    )


def _require_credentials(account: BrokerAccount, doing: str) -> None:
    missing = account.missing_credentials
    if missing:
        raise Conflict(
            f"The account's broker is not configured (credentials missing: {', '.join(missing)}); {doing}.",
            code="broker_not_configured",
            fields={"credentials": [f"{name} is not set." for name in missing]},
        )


def _client(account: BrokerAccount) -> KisClient:
    return KisClient(kis_config_for(account))


def kis_token_status(*, account: BrokerAccount) -> dict[str, Any]:
    """The account's KIS connection facts: environment, server, and the state
    and expiry of its access token and approval key, read from the token
    store (no call to KIS, never a token value)."""
    missing = account.missing_credentials
    status: dict[str, Any] = {
        "account_id": account.pk,
        "environment": account.environment,
        "configured": False,
        "problem": f"credentials missing: {', '.join(missing)}" if missing else "",
        "missing_credentials": missing,
        "fill_notices": "websocket" if account.broker_user_id else "polling",
        "access_token": None,
        "approval_key": None,
    }
    if missing:
        return status
    try:
        client = _client(account)
    except BrokerError as exc:  # an account number KIS could never accept, unreadable credentials
        status["problem"] = broker_account_mask(account=account, text=str(exc))
        return status
    status["configured"] = True
    for name, state in client.token_status().items():
        status[name] = {**state, "last_error": broker_account_mask(account=account, text=str(state.get("last_error") or ""))}
    return status


def _refresh(account: BrokerAccount, *, name: str, issue: Callable[[KisClient], object]) -> dict[str, Any]:
    _require_credentials(account, f"no {name.replace('_', ' ')} can be issued")
    try:
        issue(_client(account))
    except BrokerError as exc:
        logger.warning("KIS %s refresh for account %s refused: %s", name, account.pk, broker_account_mask(account=account, text=str(exc)))
        raise domain_error_for(exc) from exc
    logger.info("KIS %s refreshed for account %s", name, account.pk)
    return kis_token_status(account=account)


def kis_access_token_refresh(*, account: BrokerAccount) -> dict[str, Any]:
    """Issue a new access token now (``/oauth2/tokenP``). Inside a minute of
    the last issue for the app key: 503 with ``Retry-After`` (KIS's rule)."""
    return _refresh(account, name="access_token", issue=KisClient.refresh_access_token)


def kis_approval_key_refresh(*, account: BrokerAccount) -> dict[str, Any]:
    """Issue a new WebSocket approval key now (``/oauth2/Approval``), under
    the same one-a-minute rule."""
    return _refresh(account, name="approval_key", issue=KisClient.refresh_approval_key)


# --- kis_check --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckLine:
    ok: bool | None  # None: a note, neither a pass nor a failure
    name: str
    detail: str


def _step(lines: list[CheckLine], name: str, run: Callable[[], str], mask: Callable[[str], str]) -> bool:
    try:
        detail = run()
    except (BrokerError, ValueError, OSError) as exc:
        lines.append(CheckLine(False, name, f"{type(exc).__name__}: {mask(str(exc)) or 'no detail'}"))
        return False
    lines.append(CheckLine(True, name, detail))
    return True


def kis_account_check(*, account: BrokerAccount, code: str = CHECK_CODE) -> list[CheckLine]:
    """Diagnose a KIS account against its configured server, as the upstream
    terminal's diagnostics script did: configuration, access token, approval
    key, a price query and the balance, each passing or failing on its own
    line (never a secret in any of them)."""
    if account.kind != BrokerKind.KIS:
        return [CheckLine(False, "account", f"#{account.pk} is a {account.kind} account, not a KIS account")]
    lines: list[CheckLine] = []
    missing = account.missing_credentials
    lines.append(CheckLine(not missing, "credentials", "app_key and app_secret set" if not missing else f"missing: {', '.join(missing)}"))
    number, product = account.broker_account_number, account.broker_product_code
    lines.append(
        CheckLine(
            number.isdigit() and len(number) == 8 and product.isdigit() and len(product) == 2,
            "account number",
            f"CANO {number or '(unset)'}, product code {product or '(unset)'} (8 and 2 digits)",
        )
    )
    lines.append(
        CheckLine(
            None,
            "fill notices",
            f"over the WebSocket (HTS id {account.broker_user_id})"
            if account.broker_user_id
            else "no HTS id: fills arrive by polling the daily-fills query only",
        )
    )
    if missing:
        return lines

    def mask(text: str) -> str:
        return broker_account_mask(account=account, text=text)

    try:
        config = kis_config_for(account)
    except (BrokerError, ValueError) as exc:
        lines.append(CheckLine(False, "configuration", mask(str(exc))))
        return lines
    lines.append(CheckLine(None, "server", f"{account.environment}: {config.rest_url} (WebSocket {config.ws_url})"))
    client = KisClient(config)

    def token() -> str:
        client.access_token()
        return f"access token valid until {_expiry(client.token_status().get('access_token'))}"

    def approval() -> str:
        client.approval_key()
        return f"approval key valid until {_expiry(client.token_status().get('approval_key'))}"

    if not _step(lines, "access token", token, mask):
        lines.append(CheckLine(False, "price", "skipped: no access token"))
        lines.append(CheckLine(False, "balance", "skipped: no access token"))
        return lines
    _step(lines, "approval key", approval, mask)
    broker = KisBroker(account, client=client)

    def price() -> str:
        quote = broker.price(protocol.kis_symbol(code))
        return f"{code} last {quote.last} KRW"

    def balance() -> str:
        funds = broker.funds()
        holdings = broker.holdings()
        cash = ", ".join(f"{b.currency} {b.cash}" for b in funds.balances) or "no cash balance"
        return f"cash {cash}; {len(holdings)} holding(s)"

    _step(lines, "price", price, mask)
    _step(lines, "balance", balance, mask)
    return lines


def _expiry(state: Any) -> str:
    expires = state.get("expires_at") if isinstance(state, dict) else None
    try:
        return datetime.fromisoformat(str(expires)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return "an unknown time"
