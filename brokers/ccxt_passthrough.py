"""The upstream CCXT OMS's pass-through: CCXT's read-only unified calls on a
CCXT account, for the clients written against it (``POST /ccxt/{account_id}/{func}``,
``POST /ccxt/commands``, the WebSocket ``{"namespace": "ccxt", "action": "call"}`` frame).

The rules live here, the views and the gateway stay thin:

- only an allow-list of read-only unified calls (``READ_CALLS``); a call that
  changes orders, moves money or changes account settings is refused with a
  403 naming why (orders go through the OMS commands, which keep the record);
- the account must be the caller's (another user's answers 404, as one that
  does not exist) and a CCXT account;
- ``args``/``kwargs`` are bound to the method's signature and checked by
  parameter name (types and sizes bounded); a bad one is a 422, never a 500;
- the exchange call runs on a small bounded thread pool, paced per account
  (``brokers.pacing``) and bounded in time (ccxt's own ``timeout`` per request
  and ``CCXT_PASSTHROUGH_TIMEOUT`` for the whole call: 504 beyond);
- ccxt's errors answer in the one error shape (``exchange_error_for``);
- the answer is ccxt's own structure, numbers as JSON numbers (the documented
  exception to decimal strings), NaN and infinities as ``null``.

The adapter package (``brokers.ccxt``) builds the exchange; nothing here talks
HTTP by itself.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings

from accounts.models import User
from brokers.base import BrokerError
from brokers.ccxt.exchange import ccxt_exchange_for_account, ccxt_exchange_lock, ccxt_markets_load
from brokers.errors import BrokerAuthFailed, BrokerBusy, BrokerDown, BrokerRefused, domain_error_for
from brokers.models import BrokerAccount, BrokerKind
from brokers.pacing import pace
from brokers.services import broker_account_get_for_user
from core.exceptions import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from core.masking import mask_text

logger = logging.getLogger(__name__)

BATCH_MAX = 20
ARGS_MAX = 8  # positional plus keyword arguments of one call
STRING_MAX = 256
LIST_MAX = 200
PARAMS_KEYS_MAX = 32
DEPTH_MAX = 4  # nesting of a ``params`` value
ANSWER_MAX_BYTES = 16 * 1024 * 1024
MESSAGE_MAX = 300
PACE_WAIT = 2.0  # seconds a call may wait for its slot before 503

#: Read-only unified calls (ccxt's snake_case names; camelCase is accepted too).
READ_CALLS: frozenset[str] = frozenset(
    {
        "load_markets",
        "fetch_markets",
        "fetch_currencies",
        "fetch_time",
        "fetch_status",
        "fetch_ticker",
        "fetch_tickers",
        "fetch_bids_asks",
        "fetch_last_prices",
        "fetch_mark_price",
        "fetch_mark_prices",
        "fetch_order_book",
        "fetch_order_books",
        "fetch_l2_order_book",
        "fetch_trades",
        "fetch_ohlcv",
        "fetch_mark_ohlcv",
        "fetch_index_ohlcv",
        "fetch_premium_index_ohlcv",
        "fetch_balance",
        "fetch_free_balance",
        "fetch_used_balance",
        "fetch_total_balance",
        "fetch_accounts",
        "fetch_order",
        "fetch_orders",
        "fetch_open_orders",
        "fetch_closed_orders",
        "fetch_canceled_orders",
        "fetch_canceled_and_closed_orders",
        "fetch_order_status",
        "fetch_order_trades",
        "fetch_my_trades",
        "fetch_ledger",
        "fetch_ledger_entry",
        "fetch_deposits",
        "fetch_withdrawals",
        "fetch_deposits_withdrawals",
        "fetch_transactions",
        "fetch_deposit_address",
        "fetch_deposit_addresses",
        "fetch_deposit_addresses_by_network",
        "fetch_transfer",
        "fetch_transfers",
        "fetch_trading_fee",
        "fetch_trading_fees",
        "fetch_trading_limits",
        "fetch_transaction_fees",
        "fetch_deposit_withdraw_fee",
        "fetch_deposit_withdraw_fees",
        "fetch_positions",
        "fetch_position",
        "fetch_positions_risk",
        "fetch_positions_history",
        "fetch_position_history",
        "fetch_position_mode",
        "fetch_funding_rate",
        "fetch_funding_rates",
        "fetch_funding_rate_history",
        "fetch_funding_history",
        "fetch_funding_interval",
        "fetch_funding_intervals",
        "fetch_leverage",
        "fetch_leverages",
        "fetch_leverage_tiers",
        "fetch_market_leverage_tiers",
        "fetch_margin_mode",
        "fetch_margin_modes",
        "fetch_margin_adjustment_history",
        "fetch_open_interest",
        "fetch_open_interests",
        "fetch_open_interest_history",
        "fetch_borrow_interest",
        "fetch_cross_borrow_rate",
        "fetch_cross_borrow_rates",
        "fetch_isolated_borrow_rate",
        "fetch_isolated_borrow_rates",
        "fetch_greeks",
        "fetch_all_greeks",
        "fetch_option",
        "fetch_option_chain",
        "fetch_liquidations",
        "fetch_my_liquidations",
        "fetch_long_short_ratio",
        "fetch_long_short_ratio_history",
        "fetch_convert_currencies",
        "fetch_convert_trade",
        "fetch_convert_trade_history",
    }
)

#: Calls that do not need the exchange's markets first.
_NO_MARKETS = frozenset({"fetch_markets", "fetch_currencies", "fetch_time", "fetch_status"})

_ORDERS_WHY = "changes orders at the exchange: send it as an OMS command (POST /api/v1/oms/commands, or the WebSocket command), which keeps the record"
#: Refused calls by prefix, with the reason the answer names.
_REFUSED: tuple[tuple[str, str], ...] = (
    ("create_", _ORDERS_WHY),
    ("cancel_", _ORDERS_WHY),
    ("edit_", _ORDERS_WHY),
    ("close_position", _ORDERS_WHY),
    ("close_all_positions", _ORDERS_WHY),
    ("withdraw", "moves money off the exchange: it is not passed through"),
    ("transfer", "moves money between accounts: it is not passed through"),
    ("borrow", "borrows money: it is not passed through"),
    ("repay", "repays a loan: it is not passed through"),
    ("add_margin", "changes a position's margin: it is not passed through"),
    ("reduce_margin", "changes a position's margin: it is not passed through"),
    ("set_", "changes the account's settings at the exchange: it is not passed through"),
    ("private_", "is a raw exchange endpoint: only unified read calls are passed through"),
    ("public_", "is a raw exchange endpoint: only unified read calls are passed through"),
    ("sapi_", "is a raw exchange endpoint: only unified read calls are passed through"),
)

_FUNC_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def ccxt_func_name(raw: object) -> str:
    """The snake_case name of a call (``fetchTicker`` -> ``fetch_ticker``, ``fetchOHLCV`` -> ``fetch_ohlcv``)."""
    if not isinstance(raw, str) or not _FUNC_RE.match(raw):
        raise InvalidInput(
            "'func' is a ccxt method name.", code="validation_error", fields={"func": ["A ccxt method name (letters, digits, _)."]}
        )
    return _CAMEL.sub("_", raw).lower()


def ccxt_func_check(raw: object) -> str:
    """The allowed call ``raw`` names, or the refusal: 403 naming why for a call
    that changes something, 404 for a name that is no read call."""
    func = ccxt_func_name(raw)
    if func in READ_CALLS:
        return func
    for prefix, why in _REFUSED:
        if func.startswith(prefix):
            raise Forbidden(f"{func} {why}.", code="ccxt_call_refused", fields={"func": [f"{func} is not passed through."]})
    raise NotFound(
        f"{func} is not one of the read-only unified calls passed through (fetch_* that read, load_markets).",
        code="ccxt_call_unknown",
        fields={"func": ["Unknown or not allowed."]},
    )


# --- arguments -----------------------------------------------------------------------------------


def _fail(name: str, message: str) -> InvalidInput:
    return InvalidInput(f"Argument '{name}': {message}", fields={name: [message]})


def _scalar(name: str, value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) >= 2**63:
            raise _fail(name, "integer out of range.")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(name, "numbers must be finite.")
        return value
    if isinstance(value, str):
        if len(value) > STRING_MAX or "\x00" in value:
            raise _fail(name, f"strings are at most {STRING_MAX} characters, without NUL.")
        return value
    raise _fail(name, "a JSON string, number, boolean or null is expected.")


def _json_value(name: str, value: Any, depth: int = 0) -> Any:
    if isinstance(value, Mapping):
        if depth >= DEPTH_MAX:
            raise _fail(name, f"nested at most {DEPTH_MAX} levels.")
        if len(value) > PARAMS_KEYS_MAX:
            raise _fail(name, f"at most {PARAMS_KEYS_MAX} keys.")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key or len(key) > 64:
                raise _fail(name, "keys are strings of 1 to 64 characters.")
            out[key] = _json_value(name, item, depth + 1)
        return out
    if isinstance(value, list):
        if depth >= DEPTH_MAX:
            raise _fail(name, f"nested at most {DEPTH_MAX} levels.")
        if len(value) > LIST_MAX:
            raise _fail(name, f"at most {LIST_MAX} items.")
        return [_json_value(name, item, depth + 1) for item in value]
    return _scalar(name, value)


def _int(name: str, value: Any, *, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(name, f"an integer from {low} to {high}.")
    return value


def _text(name: str, value: Any, *, longest: int, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > longest or "\x00" in value:
        raise _fail(name, f"a non-empty string of at most {longest} characters.")
    return value


def _symbols(name: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > LIST_MAX:
        raise _fail(name, f"a list of at most {LIST_MAX} symbols.")
    return [_text(name, item, longest=64, optional=False) for item in value]  # type: ignore[misc]


def _params(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(name, "an object of exchange-specific parameters.")
    return _json_value(name, value)  # type: ignore[no-any-return]


#: Checks by parameter name (ccxt's unified signatures name them consistently).
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "symbol": lambda n, v: _text(n, v, longest=64),
    "symbols": _symbols,
    "code": lambda n, v: _text(n, v, longest=32),
    "codes": _symbols,
    "id": lambda n, v: _text(n, str(v) if isinstance(v, int) and not isinstance(v, bool) else v, longest=128),
    "timeframe": lambda n, v: _text(n, v, longest=8),
    "since": lambda n, v: _int(n, v, low=0, high=2**53),
    "until": lambda n, v: _int(n, v, low=0, high=2**53),
    "limit": lambda n, v: _int(n, v, low=1, high=5000),
    "params": _params,
    "reload": lambda n, v: _bool(n, v),
}


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, "true or false.")
    return value


def ccxt_args_check(args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """The shape of ``args`` (a list) and ``kwargs`` (an object), bounded;
    each value a JSON value within the limits. Names are checked once bound."""
    if args is None:
        args = []
    if kwargs is None:
        kwargs = {}
    if not isinstance(args, list):
        raise InvalidInput("'args' is a list.", fields={"args": ["A list."]})
    if not isinstance(kwargs, Mapping):
        raise InvalidInput("'kwargs' is an object.", fields={"kwargs": ["An object."]})
    if len(args) + len(kwargs) > ARGS_MAX:
        raise InvalidInput(f"At most {ARGS_MAX} arguments.", fields={"args": [f"At most {ARGS_MAX} arguments in all."]})
    for key in kwargs:
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", key):
            raise InvalidInput("'kwargs' names are parameter names.", fields={"kwargs": ["Parameter names only."]})
    checked_args = [_json_value(f"args[{i}]", value) for i, value in enumerate(args)]
    checked_kwargs = {key: _json_value(key, value) for key, value in kwargs.items()}
    return checked_args, checked_kwargs


def _bind(method: Callable[..., Any], func: str, args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    try:
        bound = inspect.signature(method).bind(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"{func}{_signature_text(method)}: {exc}.", code="ccxt_bad_arguments", fields={"args": [str(exc)[:MESSAGE_MAX]]}
        ) from None
    for name, value in list(bound.arguments.items()):
        check = _CHECKS.get(name)
        if check is not None:
            bound.arguments[name] = check(name, value)
    return list(bound.args), dict(bound.kwargs)


def _signature_text(method: Callable[..., Any]) -> str:
    try:
        return str(inspect.signature(method))
    except (TypeError, ValueError):
        return "(...)"


# --- the answer ----------------------------------------------------------------------------------


def ccxt_answer(value: Any) -> Any:
    """ccxt's answer as JSON: numbers stay numbers, NaN and infinities become
    null, anything not JSON (a Decimal, a set) a string or a list."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, Mapping):
        return {str(key): ccxt_answer(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [ccxt_answer(item) for item in value]
    return str(value)


# --- errors --------------------------------------------------------------------------------------


def _ccxt_message(exc: BaseException) -> str:
    text = mask_text(str(exc) or "").strip()
    name = type(exc).__name__
    return f"{name}: {text}"[:MESSAGE_MAX] if text else name


def exchange_error_for(exc: BaseException) -> DomainError:
    """A ccxt exception in the one error shape: the exchange refused the
    arguments (422), the credentials (409), its rate limit (503 + Retry-After),
    it was unreachable (502) or silent (504), or it failed (502)."""
    import ccxt

    if isinstance(exc, BrokerError):
        return domain_error_for(exc)
    message = _ccxt_message(exc)
    fields = {"exchange_error": [type(exc).__name__]}
    if isinstance(exc, ccxt.RequestTimeout):
        return BrokerDown(f"The exchange did not answer in time. {message}", code="exchange_timeout", status_code=504, fields=fields)
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return BrokerBusy(f"The exchange's rate limit was reached. {message}", retry_after=1, fields=fields)
    if isinstance(exc, ccxt.NetworkError):  # ExchangeNotAvailable, OnMaintenance, InvalidNonce...
        return BrokerDown(f"The exchange could not be reached. {message}", code="exchange_unavailable", status_code=502, fields=fields)
    if isinstance(exc, ccxt.AuthenticationError | ccxt.AccountNotEnabled | ccxt.AccountSuspended):
        return BrokerAuthFailed(f"The exchange refused the account's credentials. {message}", fields=fields)
    if isinstance(exc, ccxt.NotSupported):
        return InvalidInput(f"The exchange does not support this call. {message}", code="ccxt_not_supported", fields=fields)
    if isinstance(exc, ccxt.OrderNotFound):
        return NotFound(f"The exchange has no such order. {message}", code="exchange_order_not_found", fields=fields)
    if isinstance(exc, ccxt.BadRequest | ccxt.BadSymbol | ccxt.ArgumentsRequired | ccxt.InvalidOrder | ccxt.InvalidAddress):
        return BrokerRefused(f"The exchange refused the request. {message}", fields=fields)
    if isinstance(exc, ccxt.ExchangeError):
        return BrokerDown(f"The exchange answered with an error. {message}", code="exchange_error", status_code=502, fields=fields)
    if isinstance(exc, ccxt.BaseError):
        return BrokerDown(f"The exchange call failed. {message}", code="exchange_error", status_code=502, fields=fields)
    # ccxt's own code choking on arguments it accepted by signature (a wrong
    # type deep inside): the arguments' fault, not the server's.
    return InvalidInput(f"ccxt could not run the call with these arguments ({message}).", code="ccxt_bad_arguments", fields=fields)


# --- the call ------------------------------------------------------------------------------------


@dataclass
class PreparedCall:
    """A checked call: the account's exchange, the method and its arguments."""

    account_id: int
    func: str
    exchange: Any
    args: list[Any]
    kwargs: dict[str, Any]
    pace_key: str
    pace_rate: float


@dataclass
class _Pool:
    """The bounded pool the exchange calls run on (never the event loop)."""

    executor: ThreadPoolExecutor | None = None
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        workers = max(1, int(settings.CCXT_PASSTHROUGH_WORKERS))
        with self.lock:
            if self.in_flight >= workers * 4:
                raise BrokerBusy("Too many exchange calls in flight on this server; retry shortly.", retry_after=1)
            if self.executor is None:
                self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ccxt-call")
            self.in_flight += 1
        try:
            future = self.executor.submit(fn)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future[Any] | None) -> None:
        with self.lock:
            self.in_flight -= 1


_pool = _Pool()


def ccxt_account_for_user(*, user: User, account_id: int) -> BrokerAccount:
    """The caller's CCXT account (another user's answers 404; another kind 422)."""
    account = broker_account_get_for_user(user=user, account_id=account_id)
    if account.kind != BrokerKind.CCXT:
        raise InvalidInput(
            f"Account {account.pk} is a {account.kind} account: the CCXT pass-through serves CCXT accounts only.",
            code="not_a_ccxt_account",
            fields={"account_id": ["Not a CCXT account."]},
        )
    return account


def _exchange_for(account: BrokerAccount) -> Any:
    try:
        exchange = ccxt_exchange_for_account(account)
    except DomainError:
        raise
    except BrokerError as exc:
        raise domain_error_for(exc) from None
    except Exception as exc:  # unknown exchange id, bad options: the account's set-up
        raise Conflict(
            f"The account's exchange could not be set up: {_ccxt_message(exc)}",
            code="broker_not_configured",
            fields={"account_id": ["Not usable."]},
        ) from None
    return exchange


def ccxt_call_prepare(*, user: User, account_id: int, func: object, args: Any, kwargs: Any) -> PreparedCall:
    """Every check a call needs before the exchange hears of it (database and
    CPU only): the call allowed, the account the caller's CCXT account, the
    arguments bound to the method and bounded."""
    name = ccxt_func_check(func)
    checked_args, checked_kwargs = ccxt_args_check(args, kwargs)
    account = ccxt_account_for_user(user=user, account_id=account_id)
    exchange = _exchange_for(account)
    method = getattr(exchange, name, None)
    if method is None or not callable(method):
        raise InvalidInput(f"{exchange.id} has no {name}.", code="ccxt_not_supported", fields={"func": ["Not on this exchange."]})
    positional, keywords = _bind(method, name, checked_args, checked_kwargs)
    rate_limit_ms = float(getattr(exchange, "rateLimit", 0) or 0)
    return PreparedCall(
        account_id=account.pk,
        func=name,
        exchange=exchange,
        args=positional,
        kwargs=keywords,
        pace_key=f"ccxt:{account.pk}",
        pace_rate=1000.0 / rate_limit_ms if rate_limit_ms > 0 else float(settings.CCXT_PASSTHROUGH_RATE),
    )


def _call(call: PreparedCall) -> Any:
    """The exchange call itself, on the account's exchange (shared with the
    adapter, so one call at a time under its lock), its markets shared."""
    exchange = call.exchange
    with ccxt_exchange_lock(exchange):
        if call.func == "load_markets":
            reload = call.kwargs.get("reload", call.args[0] if call.args else False)
            return ccxt_markets_load(exchange, reload=bool(reload))
        if call.func not in _NO_MARKETS:
            ccxt_markets_load(exchange)  # once per exchange, shared: not on every call
        return getattr(exchange, call.func)(*call.args, **call.kwargs)


def _run(call: PreparedCall) -> Any:
    """On a pool thread: pace, call, make the answer JSON. No database here."""
    pace(call.pace_key, rate=call.pace_rate, burst=int(settings.CCXT_PASSTHROUGH_BURST), max_wait=PACE_WAIT)
    started = time.monotonic()
    try:
        answer = _call(call)
    except Exception as exc:
        error = exchange_error_for(exc)
        if error.status_code >= 500:
            logger.warning("ccxt %s on account %s failed: %s", call.func, call.account_id, _ccxt_message(exc))
        raise error from None
    finally:
        logger.debug("ccxt %s on account %s took %.3f s", call.func, call.account_id, time.monotonic() - started)
    result = ccxt_answer(answer)
    size = len(orjson.dumps(result))
    if size > ANSWER_MAX_BYTES:
        raise BrokerDown(
            f"The exchange's answer is too large to pass through ({size} bytes, at most {ANSWER_MAX_BYTES}); narrow the call (symbol, limit).",
            code="exchange_answer_too_large",
            status_code=502,
        )
    return result


def _timed_out(call: PreparedCall) -> BrokerDown:
    return BrokerDown(
        f"The exchange did not answer {call.func} within {settings.CCXT_PASSTHROUGH_TIMEOUT:g} s.", code="exchange_timeout", status_code=504
    )


def ccxt_call_run(call: PreparedCall) -> Any:
    """Run a prepared call on the pool, waiting at most ``CCXT_PASSTHROUGH_TIMEOUT``."""
    future = _pool.submit(lambda: _run(call))
    try:
        return future.result(timeout=_deadline())
    except FutureTimeout:
        raise _timed_out(call) from None


async def ccxt_call_run_async(call: PreparedCall) -> Any:
    """The same, awaited from the event loop (the WebSocket gateway)."""
    future = _pool.submit(lambda: _run(call))
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), _deadline())
    except TimeoutError:
        raise _timed_out(call) from None


def _deadline() -> float:
    # ccxt's timeout (BROKER_HTTP_TIMEOUT) bounds each HTTP request; this the whole call.
    return float(settings.CCXT_PASSTHROUGH_TIMEOUT)


def ccxt_call(*, user: User, account_id: int, func: object, args: Any = None, kwargs: Any = None) -> Any:
    """``POST /ccxt/{account_id}/{func}``: one call's answer, or a DomainError."""
    return ccxt_call_run(ccxt_call_prepare(user=user, account_id=account_id, func=func, args=args, kwargs=kwargs))


def ccxt_batch_check(raw: Any) -> list[dict[str, Any]]:
    """The batch's shape: a list of 1 to ``BATCH_MAX`` objects with exactly
    ``account_id``, ``func``, ``args``, ``kwargs``."""
    if isinstance(raw, Mapping) and isinstance(raw.get("commands"), list) and set(raw) == {"commands"}:
        raw = raw["commands"]
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(
            "The body is an array of calls {account_id, func, args, kwargs}.", fields={"non_field_errors": ["A non-empty array."]}
        )
    if len(raw) > BATCH_MAX:
        raise InvalidInput(
            f"At most {BATCH_MAX} calls per batch ({len(raw)} sent).",
            code="batch_too_large",
            fields={"non_field_errors": [f"At most {BATCH_MAX}."]},
        )
    items = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise InvalidInput(f"Call {index} is not an object.", fields={f"[{index}]": ["An object."]})
        unknown = set(item) - {"account_id", "func", "args", "kwargs"}
        if unknown:
            raise InvalidInput(
                f"Call {index} has unknown fields: {', '.join(sorted(map(str, unknown)))[:100]}.",
                fields={f"[{index}]": ["Unknown fields."]},
            )
        account_id = item.get("account_id")
        if isinstance(account_id, bool) or not isinstance(account_id, int) or not 0 < account_id < 2**63:
            raise InvalidInput(
                f"Call {index}: 'account_id' is a positive integer.", fields={f"[{index}].account_id": ["A positive integer."]}
            )
        items.append(dict(item))
    return items


def ccxt_batch(*, user: User, raw: Any) -> list[dict[str, Any]]:
    """``POST /ccxt/commands``: validated whole first (shape, allow-list,
    ownership, arguments: one refused, none run), then run in order, each paced
    per account; each answer ``{index, ok, result}`` or ``{index, ok: false, error}``
    (the exchange's refusal of one call does not stop the others)."""
    items = ccxt_batch_check(raw)
    prepared: list[PreparedCall] = []
    for index, item in enumerate(items):
        try:
            prepared.append(
                ccxt_call_prepare(
                    user=user, account_id=item["account_id"], func=item.get("func"), args=item.get("args"), kwargs=item.get("kwargs")
                )
            )
        except DomainError as exc:
            exc.message = f"Call {index}: {exc.message}"
            exc.fields = {f"[{index}].{key}": value for key, value in exc.fields.items()}
            raise
    results: list[dict[str, Any]] = []
    for index, call in enumerate(prepared):
        try:
            results.append({"index": index, "ok": True, "result": ccxt_call_run(call)})
        except DomainError as exc:
            results.append({"index": index, "ok": False, "error": {"code": exc.code, "message": exc.message, "fields": exc.fields}})
    return results


async def ccxt_ws_call(user: User, account_id: int, payload: dict[str, Any]) -> Any:
    """The WebSocket ``{"namespace": "ccxt", "action": "call", "payload": {func, args, kwargs}}``
    frame (the gateway checked the trade scope): the checks in a database
    thread, the exchange call on the pool."""
    from channels.db import database_sync_to_async

    unknown = set(payload) - {"func", "args", "kwargs"}
    if unknown:
        raise InvalidInput(
            f"Unknown payload fields: {', '.join(sorted(map(str, unknown)))[:100]}.", fields={"payload": ["Unknown fields."]}
        )
    call = await database_sync_to_async(ccxt_call_prepare)(
        user=user, account_id=account_id, func=payload.get("func"), args=payload.get("args"), kwargs=payload.get("kwargs")
    )
    return await ccxt_call_run_async(call)
