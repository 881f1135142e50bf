"""The ccxt exchange of an account: built from its exchange id, decrypted
credentials, sandbox flag (environment paper = the exchange's testnet) and
staff-editable options, cached per account and credentials version, with the
markets loaded once per exchange and URL set and shared by its accounts."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ccxt
from django.conf import settings

from brokers.base import BrokerRejected, BrokerUnavailable
from brokers.ccxt_options import (
    CCXT_TO_OURS,
    CREDENTIAL_NAMES,
    TIMEOUT_MAX_MS,
    broker_options_problem,
    ccxt_exchange_class,
    ccxt_pro_class,
)
from brokers.crypto import CredentialError, decrypt_json

if TYPE_CHECKING:
    from brokers.models import BrokerAccount

CACHE_MAX = 64  # accounts' exchanges kept per process, least recently used dropped
MARKETS_TTL = 3600.0  # seconds a loaded market list is shared before it is loaded again
MARKETS_MAX = 32


def _deep_merge(target: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            target[key] = _deep_merge(dict(target[key]), value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _timeout_ms() -> int:
    return max(100, min(TIMEOUT_MAX_MS, int(float(settings.BROKER_HTTP_TIMEOUT) * 1000)))


def ccxt_exchange_build(
    *, exchange_id: str, credentials: Mapping[str, str], sandbox: bool, options: Mapping[str, Any], pro: bool = False
) -> Any:
    """A sync ccxt exchange (``pro``: its ccxt.pro asyncio class, for the
    WebSocket feed): credentials under ccxt's names, the sandbox (testnet)
    URLs when ``sandbox``, then ``options`` deep-merged over it (their
    ``urls`` win over the sandbox's), a bounded timeout and ccxt's rate
    limiter on. Raises BrokerRejected for an unknown id or bad options."""
    cls = ccxt_exchange_class(exchange_id)
    if pro:
        pro_cls = ccxt_pro_class(exchange_id)
        if pro_cls is None:
            raise BrokerRejected(f"ccxt.pro has no WebSocket client for {exchange_id}.")
        cls = pro_cls
    problem = broker_options_problem(options)
    if problem:
        raise BrokerRejected(problem)
    config: dict[str, Any] = {"enableRateLimit": True, "timeout": _timeout_ms()}
    for name, value in credentials.items():
        ccxt_name = CREDENTIAL_NAMES.get(name, name if name in CCXT_TO_OURS else None)
        if ccxt_name and value:
            config[ccxt_name] = str(value)
    exchange = cls(config)
    if sandbox:
        try:
            exchange.set_sandbox_mode(True)
        except ccxt.NotSupported as exc:
            raise BrokerRejected(f"{exchange_id} has no sandbox/testnet; make the account live or choose another exchange.") from exc
    for key, value in options.items():
        current = getattr(exchange, key, None)
        if isinstance(value, Mapping) and isinstance(current, dict):
            setattr(exchange, key, _deep_merge(copy.deepcopy(current), value))
        else:
            setattr(exchange, key, copy.deepcopy(value))
    exchange.timeout = min(int(exchange.timeout), TIMEOUT_MAX_MS)
    exchange.enableRateLimit = True
    return exchange


@functools.lru_cache(maxsize=256)
def ccxt_watches_tickers(exchange_id: str) -> bool:
    """Whether ccxt.pro streams the exchange's tickers (``watchTicker``/``watchTickers``); cached per id."""
    cls = ccxt_pro_class(exchange_id)
    if cls is None:
        return False
    has = cls().has
    return bool(has.get("watchTicker") or has.get("watchTickers"))


def ccxt_streams_market_data(exchange_id: str, options: Mapping[str, Any]) -> bool:
    """Whether an account's market data can stream through ccxt.pro rather
    than be polled: streaming is on (``CCXT_FEED_WEBSOCKET``), ccxt.pro has
    the exchange with ``watchTicker``, and options that move the exchange's
    API URLs (``urls.api``) move its WebSocket URLs too (``urls.api.ws``):
    else the stream would reach the exchange itself while REST reaches
    another host."""
    if not settings.CCXT_FEED_WEBSOCKET or not ccxt_watches_tickers((exchange_id or "").strip()):
        return False
    urls = options.get("urls") if isinstance(options, Mapping) else None
    api = urls.get("api") if isinstance(urls, Mapping) else None
    return api is None or (isinstance(api, Mapping) and "ws" in api)


def ccxt_pro_exchange_for_account(account: BrokerAccount) -> Any:
    """A fresh ccxt.pro exchange for the account's public market streams
    (no credentials: market streams need none), its testnet when the
    account is paper, its options applied; the caller owns it and closes it
    (``await exchange.close()``)."""
    from brokers.models import Environment

    return ccxt_exchange_build(
        exchange_id=account.exchange_id,
        credentials={},
        sandbox=account.environment != Environment.LIVE,
        options=account.broker_options or {},
        pro=True,
    )


# --- per-account cache ---------------------------------------------------------------


class _Entry:
    __slots__ = ("exchange", "lock")

    def __init__(self, exchange: ccxt.Exchange) -> None:
        self.exchange = exchange
        # ccxt's sync exchange keeps one HTTP session and nonce: one call at a time.
        self.lock = threading.RLock()


_cache: OrderedDict[tuple[int, str], _Entry] = OrderedDict()
_markets: OrderedDict[str, tuple[float, dict[str, Any], dict[str, Any] | None]] = OrderedDict()
_cache_lock = threading.Lock()


def _account_credentials(account: BrokerAccount) -> dict[str, str]:
    try:
        stored = decrypt_json(account.credentials_encrypted) if account.credentials_encrypted else {}
    except CredentialError as exc:
        raise BrokerUnavailable("The account's exchange credentials cannot be read (encryption key).") from exc
    return {str(name): str(value) for name, value in stored.items() if value}


def _version(account: BrokerAccount) -> str:
    """A digest of everything the exchange is built from (a change builds a new one)."""
    parts = [account.exchange_id, account.environment, account.credentials_encrypted, json.dumps(account.broker_options, sort_keys=True)]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _markets_key(exchange: ccxt.Exchange) -> str:
    urls = json.dumps(exchange.urls.get("api"), sort_keys=True, default=str)
    options = json.dumps(exchange.options.get("defaultType"), default=str)
    return hashlib.sha256(f"{exchange.id}\x00{urls}\x00{options}".encode()).hexdigest()


def ccxt_exchange_lock(exchange: ccxt.Exchange) -> threading.RLock:
    """The lock serializing calls on a cached exchange (one a fresh one gets)."""
    with _cache_lock:
        for entry in _cache.values():
            if entry.exchange is exchange:
                return entry.lock
    return threading.RLock()


def ccxt_markets_load(exchange: ccxt.Exchange, *, reload: bool = False) -> dict[str, Any]:
    """The exchange's markets, loaded once per exchange id and URL set and
    shared by the accounts on it (for MARKETS_TTL). Raises ccxt's errors."""
    key = _markets_key(exchange)
    now = time.monotonic()
    with _cache_lock:
        shared = _markets.get(key)
    if shared is not None and not reload and now - shared[0] < MARKETS_TTL:
        if exchange.markets is not shared[1]:
            exchange.set_markets(shared[1], shared[2])
        return exchange.markets
    markets = exchange.load_markets(reload=True)
    with _cache_lock:
        _markets[key] = (now, exchange.markets, exchange.currencies)
        _markets.move_to_end(key)
        while len(_markets) > MARKETS_MAX:
            _markets.popitem(last=False)
    return markets


def ccxt_exchange_for_account(account: BrokerAccount) -> ccxt.Exchange:
    """The account's exchange (built once per credentials version, kept in a
    bounded cache). Environment paper means the exchange's sandbox/testnet.
    Markets are loaded on first use (ccxt_markets_load), not here."""
    from brokers.models import Environment

    if not account.exchange_id:
        raise BrokerRejected("The account has no CCXT exchange id.")
    key = (int(account.pk), _version(account))
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None:
            _cache.move_to_end(key)
            return entry.exchange
    exchange = ccxt_exchange_build(
        exchange_id=account.exchange_id,
        credentials=_account_credentials(account),
        sandbox=account.environment != Environment.LIVE,
        options=account.broker_options or {},
    )
    with _cache_lock:
        for stale in [k for k in _cache if k[0] == key[0]]:
            del _cache[stale]
        _cache[key] = _Entry(exchange)
        while len(_cache) > CACHE_MAX:
            _cache.popitem(last=False)
    return exchange


def ccxt_cache_clear() -> None:
    """Forget every cached exchange and market list (tests, credential rotation)."""
    with _cache_lock:
        _cache.clear()
        _markets.clear()
