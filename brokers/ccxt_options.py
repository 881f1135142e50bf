"""What the shared broker code (services, admin, commands) asks about CCXT
accounts without importing the adapter package (the OMS imports the
services): ccxt's exchange ids, their required credentials in our names,
and which broker_options an account may hold."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import ccxt

from brokers.base import BrokerRejected

# Our stored credential names (snake_case, as set_broker_credentials takes
# them) and ccxt's attribute names; ccxt's own spelling is accepted too.
CREDENTIAL_NAMES: dict[str, str] = {
    "api_key": "apiKey",
    "secret": "secret",
    "password": "password",
    "uid": "uid",
    "login": "login",
    "twofa": "twofa",
    "private_key": "privateKey",
    "wallet_address": "walletAddress",
    "token": "token",
    "account_id": "accountId",
}
CCXT_TO_OURS = {ccxt_name: ours for ours, ccxt_name in CREDENTIAL_NAMES.items()}

# Options staff may set; anything else in broker_options is refused (a key
# like "apiKey" there would bypass the encrypted credentials).
OPTION_KEYS = frozenset({"options", "urls", "headers", "hostname", "timeout", "rateLimit", "precisionMode", "userAgent"})
TIMEOUT_MAX_MS = 60_000


def ccxt_exchange_ids() -> list[str]:
    return list(ccxt.exchanges)


def ccxt_exchange_class(exchange_id: str) -> type[ccxt.Exchange]:
    """The sync ccxt class of ``exchange_id``; BrokerRejected when ccxt has none."""
    exchange_id = (exchange_id or "").strip()
    if exchange_id not in ccxt.exchanges:
        raise BrokerRejected(f"ccxt has no exchange '{exchange_id[:40]}'.")
    cls: type[ccxt.Exchange] = getattr(ccxt, exchange_id)
    return cls


def ccxt_pro_class(exchange_id: str) -> type[Any] | None:
    """The ccxt.pro (asyncio, WebSocket) class of ``exchange_id``, or None when ccxt.pro has none."""
    import ccxt.pro

    exchange_id = (exchange_id or "").strip()
    if exchange_id not in ccxt.pro.exchanges:
        return None
    cls: type[Any] = getattr(ccxt.pro, exchange_id)
    return cls


def ccxt_required_credentials(exchange_id: str) -> list[str]:
    """The credentials the exchange needs, in our names (api_key, secret, password...)."""
    required = ccxt_exchange_class(exchange_id)().requiredCredentials
    return [CCXT_TO_OURS.get(name, name) for name, needed in required.items() if needed]


def broker_options_problem(options: Any) -> str | None:
    """Why ``options`` cannot be an account's ccxt options, or None."""
    if not isinstance(options, Mapping):
        return "The broker options must be a JSON object."
    unknown = sorted(str(key) for key in options if key not in OPTION_KEYS)
    if unknown:
        return f"Unknown broker option(s) {', '.join(unknown)[:200]}; allowed: {', '.join(sorted(OPTION_KEYS))}."
    for key in ("options", "urls", "headers"):
        if key in options and not isinstance(options[key], Mapping):
            return f"The broker option '{key}' must be a JSON object."
    timeout = options.get("timeout")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or not 100 <= timeout <= TIMEOUT_MAX_MS):
        return f"The broker option 'timeout' must be milliseconds between 100 and {TIMEOUT_MAX_MS}."
    if len(json.dumps(options)) > 20_000:
        return "The broker options are too large."
    return None
