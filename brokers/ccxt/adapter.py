"""A CCXT account as a Broker: ccxt's unified calls (create/edit/cancel/fetch
orders, my trades, balance, positions, tickers, OHLCV) mapped to the
protocol and the money model, ccxt's errors to the protocol's.

Symbols: ours are ``VENUE:CCXT_SYMBOL`` (``BINANCE:BTC/USDT``,
``BINANCEUSDM:BTC/USDT:USDT``), the venue the exchange id upper-cased.

Errors (ccxt's class hierarchy, so any exchange maps the same way):

* ``AuthenticationError`` (and ``PermissionDenied``) -> BrokerAuthExpired;
* ``DDoSProtection``/``RateLimitExceeded`` -> BrokerRateLimited;
* a network failure (``RequestTimeout``, ``ExchangeNotAvailable``,
  ``NetworkError``, a ``BadResponse``) -> BrokerTimeout for a request that
  changes an order (it may have been executed: never re-sent; the OMS
  settles it by our client order id), BrokerUnavailable when the connection
  was refused (surely not sent) or for a read;
* ``InsufficientFunds``, ``BadSymbol`` -> BrokerRejected;
* ``DuplicateOrderId`` and any other refusal of a new order -> the order is
  looked up by our client order id first (an exchange that answers a resent
  id with a generic error, as Binance's "Duplicate order sent." does): found,
  it is the answer; else BrokerRejected;
* ``OrderNotFound`` on a cancel -> the order is looked up (already canceled
  is the answer; filled is a refusal).

Every order and trade keeps the exchange's own payload (``info``) in ``raw``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import ccxt
from django.core.cache import cache
from django.db import transaction

from brokers.base import (
    Balance,
    BrokerAuthExpired,
    BrokerPosition,
    BrokerRateLimited,
    BrokerRejected,
    BrokerTimeout,
    BrokerUnavailable,
    Capabilities,
    Fill,
    Funds,
    Holding,
    OrderAck,
    OrderRequest,
    OrderStatus,
)
from brokers.ccxt.exchange import ccxt_exchange_for_account, ccxt_exchange_lock, ccxt_markets_load
from brokers.ccxt.markets import precision_step
from brokers.models import BrokerAccount
from brokers.registry import deliver_fills
from core.masking import mask_secrets
from marketdata.types import Bar, Quote, Tick
from marketdata.venues import ccxt_venue, symbol_compose, symbol_split

logger = logging.getLogger(__name__)
T = TypeVar("T")

STATUSES = {
    "open": "new",
    "closed": "filled",
    "canceled": "canceled",
    "cancelled": "canceled",
    "expired": "expired",
    "rejected": "rejected",
}
TIF_IN = {"GTC": "gtc", "IOC": "ioc", "FOK": "ioc", "PO": "gtc", "GTX": "gtc", "GTD": "gtc"}
DERIVATIVE_TYPES = ("swap", "future", "delivery", "linear", "inverse")
WATCHED_MAX = 200  # symbols remembered per account for fills/orders look-ups
WATCHED_TTL = 14 * 86400
RATE_LIMIT_RETRY = 1.0
COST_SCALE = Decimal("1e-10")  # the average cost's places (the price columns')
HISTORY_PAGE = 1000  # candles per fetch_ohlcv call (Binance spot's most)
COST_TRADES = 1000
COST_TTL = 60  # seconds a holding's cost is kept for the same quantity held  # the latest trades of a pair asked for a holding's cost (Binance's most per call)


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def _time(ms: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(ms) / 1000, tz=UTC) if ms else None
    except (TypeError, ValueError, OverflowError):
        return None


def _fee_in(trade: dict[str, Any], currency: str) -> Decimal:
    """The trade's fees charged in ``currency`` (ccxt's ``fees``, else its ``fee``)."""
    fees = [f for f in (trade.get("fees") or []) if f] or [trade.get("fee") or {}]
    return sum((_dec(f.get("cost")) or Decimal(0) for f in fees if f.get("currency") == currency), Decimal(0))


def average_cost(trades: Iterable[dict[str, Any]], held: Decimal, *, base: str, quote: str, dust: Decimal) -> Decimal | None:
    """The average cost (in ``quote``) per unit of the ``held`` units of
    ``base``, from the account's trades of BASE/QUOTE: going back from what is
    held now, the latest moment the account held none (within ``dust``) is
    found; the trades since then, walked forward as weighted averages (a buy
    adds its amount less a fee in ``base`` at its cost plus a fee in ``quote``;
    a sell leaves the average), give the cost. Fees in a third currency (BNB)
    are not in it. None when the trades do not explain the quantity held (a
    deposit, a transfer, a trade of another pair, or history older than the
    trades): the cost is unknown, never 0."""
    rows = sorted(trades, key=lambda t: (int(t.get("timestamp") or 0), str(t.get("id"))))
    moves: list[tuple[Decimal, Decimal]] = []  # (signed change of the base held, cost of a buy)
    for t in rows:
        amount, price, side = _dec(t.get("amount")), _dec(t.get("price")), t.get("side")
        if amount is None or price is None or side not in ("buy", "sell"):
            return None
        fee_base = _fee_in(t, base)
        if side == "buy":
            moves.append((amount - fee_base, amount * price + _fee_in(t, quote)))
        else:
            moves.append((-(amount + fee_base), Decimal(0)))
    start, before = None, held
    for index in range(len(moves) - 1, -1, -1):
        before -= moves[index][0]
        if abs(before) <= dust:
            start = index
            break
    if start is None:
        return None
    qty = cost = Decimal(0)
    for change, paid in moves[start:]:
        if change > 0:
            qty, cost = qty + change, cost + paid
        else:
            if -change > qty + dust:
                return None  # sold more than the trades bought: something else came in
            cost -= cost * min(-change, qty) / qty if qty else Decimal(0)
            qty = max(Decimal(0), qty + change)
    if qty <= dust:
        return None
    return (cost / qty).quantize(COST_SCALE)


def _raw(info: Any) -> dict[str, Any]:
    """The exchange's payload, masked of anything that looks like a secret."""
    if isinstance(info, dict):
        return dict(mask_secrets(info))
    return {"info": mask_secrets(info)} if info is not None else {}


def _refused_connection(exc: BaseException) -> bool:
    """Whether the request surely never left: the connection was refused."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError) or type(seen).__name__ in ("NewConnectionError", "NameResolutionError"):
            return True
        text = str(seen)
        if "Connection refused" in text or "NewConnectionError" in text or "Failed to resolve" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def error_for(exc: ccxt.BaseError, *, sent: bool) -> Exception:
    """The protocol's error for ccxt's ``exc``; ``sent``: the request changes
    an order (a network failure leaves its fate unknown)."""
    message = str(exc)[:300]
    if isinstance(exc, ccxt.AuthenticationError):
        return BrokerAuthExpired(f"The exchange refused the account's API key: {message}")
    if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        return BrokerRateLimited(f"The exchange's rate limit: {message}", retry_after=RATE_LIMIT_RETRY)
    if isinstance(exc, ccxt.OperationFailed):  # network errors, bad or missing answers
        if sent and not _refused_connection(exc):
            return BrokerTimeout(f"No answer from the exchange; the order's state is unknown: {message}")
        return BrokerUnavailable(f"The exchange could not be reached: {message}")
    return BrokerRejected(message)


def _capabilities(exchange: ccxt.Exchange) -> Capabilities:
    derivatives = str(exchange.options.get("defaultType", "spot")) in DERIVATIVE_TYPES
    # Stops (ccxt's triggerPrice) on spot where ccxt says the exchange takes trigger orders. Not on
    # derivatives: Binance's USD-M conditional orders live in its Algo Order API under their own id,
    # their fill in a new order, which this adapter does not follow yet.
    stops = not derivatives and bool(exchange.has.get("createTriggerOrder") or exchange.has.get("createStopOrder"))
    return Capabilities(
        # Spot editOrder is a cancel-and-replace under a new order id on most
        # exchanges (Binance's cancelReplace): cancel and send again instead.
        supports_modify=bool(exchange.has.get("editOrder")) and derivatives,
        supports_client_order_id=True,
        supports_reduce_only=derivatives,
        hedging=False,
        order_types=frozenset({"market", "limit", "stop", "stop_limit"} if stops else {"market", "limit"}),
        times_in_force=frozenset({"gtc", "ioc"}),
    )


class CcxtBroker:
    """One CCXT account (testnet when its environment is paper) as a Broker."""

    def __init__(self, account: BrokerAccount, *, exchange: ccxt.Exchange | None = None) -> None:
        self.account_id = account.pk
        # Cache keys of this account: its id and creation (an id a rolled-back test database gives again is another account).
        self.cache_scope = f"{account.pk}:{account.created_at.timestamp() if account.created_at else 0}"
        self.base_currency = (account.base_currency or "USDT").upper()
        self.venue = ccxt_venue(account.exchange_id)
        self.exchange = exchange or ccxt_exchange_for_account(account)
        # Open orders of every symbol in one call where the exchange allows it (ccxt warns otherwise).
        self.exchange.options["warnOnFetchOpenOrdersWithoutSymbol"] = False
        self.lock = ccxt_exchange_lock(self.exchange)
        self.capabilities = _capabilities(self.exchange)
        self.derivatives = self.capabilities.supports_reduce_only

    # --- plumbing -------------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any, sent: bool = False, **kwargs: Any) -> T:
        try:
            with self.lock:
                return fn(*args, **kwargs)
        except ccxt.BaseError as exc:
            raise error_for(exc, sent=sent) from exc

    def _markets(self) -> dict[str, Any]:
        try:
            with self.lock:
                return ccxt_markets_load(self.exchange)
        except ccxt.BaseError as exc:
            raise error_for(exc, sent=False) from exc

    def market_symbol(self, symbol: str) -> str:
        """ccxt's symbol of our ``VENUE:SYMBOL``; BrokerRejected when the exchange has no such market."""
        parts = symbol_split(symbol)
        if parts is None or parts[0] != self.venue:
            raise BrokerRejected(f"{symbol} is not traded on {self.venue}.")
        if parts[1] not in self._markets():
            raise BrokerRejected(f"{self.venue} has no market {parts[1]}.")
        return parts[1]

    def ours(self, market_symbol: str) -> str:
        return symbol_compose(self.venue, market_symbol)

    def _watch(self, market_symbol: str) -> None:
        key = f"ccxt:watched:{self.account_id}"
        watched = dict(cache.get(key) or {})
        watched[market_symbol] = time.time()
        if len(watched) > WATCHED_MAX:
            watched = dict(sorted(watched.items(), key=lambda kv: kv[1])[-WATCHED_MAX:])
        cache.set(key, watched, WATCHED_TTL)

    def _watched(self) -> list[str]:
        """Symbols to ask about fills and orders: those this account traded
        through us, those with working orders, positions or holdings."""
        symbols = set((cache.get(f"ccxt:watched:{self.account_id}") or {}).keys())
        markets = self._markets()
        for order in self._fetch_open():
            symbols.add(order["symbol"])
        if self.derivatives:
            symbols.update(p.symbol.partition(":")[2] for p in self.positions())
        else:
            symbols.update(pair for _, pair, _ in self._held())
        return sorted(s for s in symbols if s in markets)

    # --- mapping --------------------------------------------------------------------------

    def order_status(self, order: dict[str, Any]) -> OrderStatus:
        filled = _dec(order.get("filled")) or Decimal(0)
        amount = _dec(order.get("amount")) or Decimal(0)
        status = STATUSES.get(str(order.get("status") or "open"), "new")
        if status == "new" and filled > 0:
            status = "partially_filled"
        tif = str(order.get("timeInForce") or "GTC").upper()
        if status == "expired" and tif in ("IOC", "FOK"):
            status = "canceled"  # what an immediate-or-cancel could not fill, the venue canceled
        average = _dec(order.get("average"))
        cost = _dec(order.get("cost"))
        order_type = str(order.get("type") or "limit").lower()
        stop_price = _dec(order.get("triggerPrice") or order.get("stopPrice"))
        if order_type in ("market", "limit") and stop_price:
            order_type = "stop" if order_type == "market" else "stop_limit"
        return OrderStatus(
            broker_order_id=str(order.get("id") or ""),
            client_order_id=order.get("clientOrderId") or None,
            symbol=self.ours(str(order.get("symbol"))),
            side=str(order.get("side") or "").lower(),
            order_type=order_type if order_type in ("market", "limit", "stop", "stop_limit") else order_type.replace("stop_market", "stop"),
            qty=amount,
            status=status,
            filled_qty=filled,
            avg_fill_price=average if filled else None,
            price=_dec(order.get("price")) if order_type in ("limit", "stop_limit") else None,
            stop_price=stop_price or None,
            time_in_force=TIF_IN.get(tif, "gtc"),
            created_at=_time(order.get("timestamp")),
            updated_at=_time(order.get("lastUpdateTimestamp") or order.get("lastTradeTimestamp") or order.get("timestamp")),
            raw=_raw(order.get("info")),
            filled_amount=cost if filled else None,
        )

    def fill(self, trade: dict[str, Any], client_order_id: str | None = None) -> Fill:
        if str(trade.get("side") or "").lower() not in ("buy", "sell"):
            raise BrokerUnavailable(f"The exchange reported trade {trade.get('id')} without a side.")
        fee = trade.get("fee") or {}
        fees = [f for f in (trade.get("fees") or []) if f and f.get("cost") is not None]
        currency = fee.get("currency") or (fees[0]["currency"] if fees else None)
        cost = sum((_dec(f.get("cost")) or Decimal(0) for f in fees if f.get("currency") == currency), Decimal(0)) if fees else None
        if cost is None:
            cost = _dec(fee.get("cost")) or Decimal(0)
        return Fill(
            broker_trade_id=f"{trade.get('symbol')}#{trade.get('id')}",
            broker_order_id=str(trade.get("order") or ""),
            client_order_id=client_order_id,
            symbol=self.ours(str(trade.get("symbol"))),
            side=str(trade.get("side") or "").lower(),
            qty=_dec(trade.get("amount")) or Decimal(0),
            price=_dec(trade.get("price")) or Decimal(0),
            fee=cost,
            fee_currency=str(currency) if currency else None,
            executed_at=_time(trade.get("timestamp")),
            raw=_raw(trade.get("info")),
        )

    def _ack(self, order: dict[str, Any], message: str) -> OrderAck:
        view = self.order_status(order)
        # A fill is booked from its trade (with its fee), never from the ack:
        # the order is acknowledged as working and its trades delivered.
        status = "new" if view.status in ("filled", "partially_filled") else view.status
        return OrderAck(broker_order_id=view.broker_order_id, status=status, message=message, raw=view.raw)

    def _deliver_trades(self, order: dict[str, Any], client_order_id: str | None) -> None:
        if not (_dec(order.get("filled")) or Decimal(0)):
            return
        trades = [t for t in (order.get("trades") or []) if t.get("id")]
        if not trades:
            try:
                since = int(order.get("timestamp") or time.time() * 1000) - 60_000
                trades = self._call(self.exchange.fetch_my_trades, order["symbol"], since, None, {"orderId": order["id"]})
            except Exception as exc:  # noqa: BLE001 - reconciliation books them later
                logger.warning("trades of order %s not fetched now: %s", order.get("id"), exc)
                return
        # Trades inside an order's answer may lack what the order says (Binance's "fills": no side, no order id).
        defaults = {"side": order.get("side"), "order": order["id"], "symbol": order["symbol"], "timestamp": order.get("timestamp")}
        trades = [{**t, **{k: v for k, v in defaults.items() if not t.get(k)}} for t in trades]
        fills = [self.fill(t, client_order_id) for t in trades if str(t["order"]) == str(order["id"])]
        fills = [f for f in fills if f.qty > 0]
        if fills:
            account_id = self.account_id
            transaction.on_commit(lambda: deliver_fills(account_id, fills))

    # --- orders ---------------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> OrderAck:
        if request.order_type not in self.capabilities.order_types:
            kinds = ", ".join(sorted(self.capabilities.order_types))
            raise BrokerRejected(f"{self.venue} orders through this terminal are {kinds}, not {request.order_type}.")
        if request.time_in_force not in self.capabilities.times_in_force:
            raise BrokerRejected(f"{self.venue} takes gtc or ioc orders, not {request.time_in_force}.")
        if request.side not in ("buy", "sell"):
            raise BrokerRejected(f"Unknown side {request.side!r}.")
        symbol = self.market_symbol(request.symbol)
        spot_reduce = request.reduce_only and not self.derivatives
        if spot_reduce:
            self._spot_reduce_check(symbol, request.side, Decimal(request.qty))
        price = None
        params: dict[str, Any] = {"clientOrderId": request.client_order_id}
        if request.order_type in ("limit", "stop_limit"):
            if request.price is None:
                raise BrokerRejected(f"A {request.order_type} order needs a price.")
            price = float(request.price)
            params["timeInForce"] = request.time_in_force.upper()
        if request.order_type in ("stop", "stop_limit"):
            if request.stop_price is None:
                raise BrokerRejected(f"A {request.order_type} order needs a stop price.")
            # ccxt's unified trigger: Binance spot makes it STOP_LOSS (stop) / STOP_LOSS_LIMIT (stop_limit),
            # a buy triggered when the price rises to it, a sell when it falls to it.
            params["triggerPrice"] = float(request.stop_price)
        ccxt_type = "limit" if request.order_type in ("limit", "stop_limit") else "market"
        if request.reduce_only and not spot_reduce:
            params["reduceOnly"] = True
        self._watch(symbol)
        try:
            with self.lock:
                order = self.exchange.create_order(symbol, ccxt_type, request.side, float(request.qty), price, params)
        except (ccxt.InsufficientFunds, ccxt.BadSymbol) as exc:
            raise BrokerRejected(str(exc)[:300]) from exc
        except (ccxt.AuthenticationError, ccxt.OperationFailed) as exc:
            raise error_for(exc, sent=True) from exc
        except ccxt.BaseError as exc:
            # DuplicateOrderId, or any refusal: is an order of ours there already?
            existing = self._by_client_id(symbol, request.client_order_id)
            if existing is None:
                raise BrokerRejected(str(exc)[:300]) from exc
            order, message = existing, "The exchange has this client order id already: that order is the answer."
        else:
            message = "Accepted by the exchange."
        self._deliver_trades(order, request.client_order_id)
        return self._ack(order, message)

    def _spot_reduce_check(self, symbol: str, side: str, qty: Decimal) -> None:
        """Spot has no reduce-only flag: a reduce-only order is a sell of no
        more than the asset held (what closing a spot position means)."""
        if side != "sell":
            raise BrokerRejected("A spot account holds no short to reduce with a buy.")
        base = str(self._markets()[symbol].get("base"))
        free = _dec((self._balance().get("free") or {}).get(base)) or Decimal(0)
        if qty > free:
            raise BrokerRejected(f"Reduce-only: {qty} {base} is more than the {free} {base} held.")

    def _by_client_id(self, symbol: str, client_order_id: str) -> dict[str, Any] | None:
        try:
            with self.lock:
                order: dict[str, Any] = self.exchange.fetch_order(None, symbol, {"clientOrderId": client_order_id})
        except ccxt.OrderNotFound:
            return None
        except ccxt.BaseError as exc:
            raise error_for(exc, sent=False) from exc
        return order if order and order.get("id") else None

    def cancel_order(self, *, broker_order_id: str, symbol: str) -> OrderAck:
        market = self.market_symbol(symbol)
        try:
            with self.lock:
                order = self.exchange.cancel_order(broker_order_id, market)
        except (ccxt.AuthenticationError, ccxt.OperationFailed) as exc:
            raise error_for(exc, sent=True) from exc
        except ccxt.BaseError as exc:
            view = self.get_order(broker_order_id=broker_order_id, symbol=symbol)
            if view is None:
                raise BrokerRejected(f"The exchange has no order {broker_order_id}.") from exc
            if view.status == "canceled":
                return OrderAck(broker_order_id=broker_order_id, status="canceled", filled_qty=view.filled_qty, raw=view.raw)
            raise BrokerRejected(f"The order is {view.status} at the exchange; nothing left to cancel.") from exc
        view = self.order_status(order)
        status = view.status if view.status in ("canceled", "filled", "expired", "rejected") else "pending_cancel"
        return OrderAck(
            broker_order_id=broker_order_id, status=status, filled_qty=view.filled_qty, message="Canceled at the exchange.", raw=view.raw
        )

    def modify_order(
        self, *, broker_order_id: str, symbol: str, qty: Decimal | None, price: Decimal | None, stop_price: Decimal | None
    ) -> OrderAck:
        if not self.capabilities.supports_modify:
            raise BrokerRejected(f"{self.venue} orders are canceled and sent again, not changed.")
        if stop_price is not None:
            raise BrokerRejected("Only limit orders' quantity and price change here.")
        market = self.market_symbol(symbol)
        current = self._call(self.exchange.fetch_order, broker_order_id, market)
        if current.get("type") != "limit":
            raise BrokerRejected("Only limit orders change at the exchange.")
        amount = float(qty) if qty is not None else current["amount"]
        new_price = float(price) if price is not None else current["price"]
        order = self._call(self.exchange.edit_order, broker_order_id, market, "limit", current["side"], amount, new_price, {}, sent=True)
        if str(order.get("id")) != broker_order_id:
            logger.error("order %s changed at %s under a new id %s", broker_order_id, self.venue, order.get("id"))
        self._deliver_trades(order, current.get("clientOrderId"))
        return self._ack(order, "Changed at the exchange.")

    def get_order(
        self, *, client_order_id: str | None = None, broker_order_id: str | None = None, symbol: str | None = None
    ) -> OrderStatus | None:
        markets = [self.market_symbol(symbol)] if symbol else self._watched()
        for market in markets:
            try:
                with self.lock:
                    if broker_order_id:
                        order = self.exchange.fetch_order(broker_order_id, market)
                    elif client_order_id:
                        order = self.exchange.fetch_order(None, market, {"clientOrderId": client_order_id})
                    else:
                        return None
            except ccxt.OrderNotFound:
                continue
            except ccxt.BaseError as exc:
                raise error_for(exc, sent=False) from exc
            if order and order.get("id"):
                return self.order_status(order)
        return None

    def _fetch_open(self) -> list[dict[str, Any]]:
        orders: list[dict[str, Any]] = self._call(self.exchange.fetch_open_orders)
        return orders

    def open_orders(self) -> list[OrderStatus]:
        self._markets()
        return [self.order_status(o) for o in self._fetch_open()]

    def orders_since(self, since: datetime) -> list[OrderStatus]:
        since_ms = int(since.timestamp() * 1000)
        views: dict[str, OrderStatus] = {}
        for market in self._watched():
            for order in self._call(self.exchange.fetch_orders, market, since_ms):
                view = self.order_status(order)
                views[view.broker_order_id] = view
        for order in self._fetch_open():
            view = self.order_status(order)
            views.setdefault(view.broker_order_id, view)
        return list(views.values())

    def closed_orders(self, since: datetime) -> list[OrderStatus]:
        return [v for v in self.orders_since(since) if v.status in ("filled", "canceled", "expired", "rejected")]

    def fills_since(self, since: datetime) -> list[Fill]:
        since_ms = int(since.timestamp() * 1000)
        fills: list[Fill] = []
        for market in self._watched():
            trades = self._call(self.exchange.fetch_my_trades, market, since_ms)
            if not trades:
                continue
            # Trades rarely carry the client order id (Binance's do not): the
            # orders of the same span name it, so a fill finds our order even
            # when its answer was lost (no exchange order id on our side yet).
            oldest = min(int(t.get("timestamp") or since_ms) for t in trades)
            named = {
                str(o.get("id")): o.get("clientOrderId")
                for o in self._call(self.exchange.fetch_orders, market, min(since_ms, oldest) - 86_400_000)
            }
            fills.extend(self.fill(t, named.get(str(t.get("order"))) or None) for t in trades)
        return fills

    # --- money ----------------------------------------------------------------------------

    def positions(self) -> list[BrokerPosition]:
        if not self.derivatives:
            return []
        self._markets()
        answer = []
        for p in self._call(self.exchange.fetch_positions):
            contracts = _dec(p.get("contracts")) or Decimal(0)
            if not contracts or p.get("symbol") not in self.exchange.markets:
                continue
            size = _dec(p.get("contractSize")) or Decimal(1)
            qty = contracts * size * (-1 if p.get("side") == "short" else 1)
            answer.append(
                BrokerPosition(
                    symbol=self.ours(p["symbol"]),
                    qty=qty,
                    avg_price=_dec(p.get("entryPrice")) or Decimal(0),
                    unrealized_pnl=_dec(p.get("unrealizedPnl")),
                )
            )
        return answer

    def _balance(self) -> dict[str, Any]:
        balance: dict[str, Any] = self._call(self.exchange.fetch_balance)
        return balance

    def _held(self) -> list[tuple[str, str, Decimal]]:
        """Spot assets held (currency, the market ``ASSET/BASE``, quantity) where the exchange lists that pair."""
        if self.derivatives:
            return []
        markets = self._markets()
        totals = self._balance().get("total") or {}
        held = []
        for currency, total in sorted(totals.items()):
            qty = _dec(total) or Decimal(0)
            pair = f"{currency}/{self.base_currency}"
            if qty > 0 and currency != self.base_currency and pair in markets:
                held.append((str(currency), pair, qty))
        return held

    def holdings(self) -> list[Holding]:
        """Spot assets held, as the instrument ``VENUE:ASSET/BASE`` where the
        exchange lists that pair, each at its average cost from the account's
        own trades of the pair (``holding_cost``: None when they cannot tell
        it), its last price (one ``fetch_tickers`` call for all) and the P&L
        at it (None with an unknown cost)."""
        held = self._held()
        rates = self.rates(currency for currency, _, _ in held) if held else {}
        answer = []
        for currency, pair, qty in held:
            cost, last = self.holding_cost(pair, qty), rates.get(currency)
            pnl = (last - cost) * qty if cost is not None and last is not None else None
            answer.append(
                Holding(
                    symbol=self.ours(pair), qty=qty, avg_price=cost, last_price=last, pnl=pnl, name=currency, currency=self.base_currency
                )
            )
        return answer

    def holding_cost(self, market: str, qty: Decimal) -> Decimal | None:
        """The average cost of ``qty`` held of ``market``'s base asset, from the
        account's latest trades of the market (one ``fetch_my_trades`` call,
        paced by ccxt's limiter, kept COST_TTL seconds for the same quantity):
        see ``average_cost``. None where the exchange has no trade history call."""
        if not self.exchange.has.get("fetchMyTrades"):
            return None
        key = f"ccxt:cost:{self.cache_scope}:{market}:{qty}"
        known = cache.get(key)
        if known is not None:
            return _dec(known)
        info = self._markets()[market]
        trades = self._call(self.exchange.fetch_my_trades, market, None, COST_TRADES)
        dust = precision_step((info.get("precision") or {}).get("amount"), self.exchange.precisionMode) or Decimal(0)
        cost = average_cost(trades, qty, base=str(info.get("base")), quote=str(info.get("quote")), dust=dust)
        # A sync reads the holdings twice within seconds: the same quantity's cost is asked for once.
        cache.set(key, "" if cost is None else str(cost), COST_TTL)
        return cost

    def rates(self, currencies: Iterable[str]) -> dict[str, Decimal]:
        """Units of the base currency per unit of each currency, from the exchange's last prices."""
        markets = self._markets()
        wanted = {c for c in currencies if c != self.base_currency}
        pairs = {c: f"{c}/{self.base_currency}" for c in wanted if f"{c}/{self.base_currency}" in markets}
        inverse = {c: f"{self.base_currency}/{c}" for c in wanted - set(pairs) if f"{self.base_currency}/{c}" in markets}
        symbols = sorted(set(pairs.values()) | set(inverse.values()))
        tickers: dict[str, Any] = {}
        if symbols:
            if self.exchange.has.get("fetchTickers"):
                tickers = self._call(self.exchange.fetch_tickers, symbols)
            else:
                tickers = {s: self._call(self.exchange.fetch_ticker, s) for s in symbols}
        rates = {self.base_currency: Decimal(1)}
        for currency, pair in pairs.items():
            last = _dec((tickers.get(pair) or {}).get("last"))
            if last:
                rates[currency] = last
        for currency, pair in inverse.items():
            last = _dec((tickers.get(pair) or {}).get("last"))
            if last:
                rates[currency] = Decimal(1) / last
        return rates

    def _unrealized(self) -> dict[str, Decimal]:
        """Open positions' unrealized P&L per settlement currency (``fetch_positions``)."""
        markets = self._markets()
        by_currency: dict[str, Decimal] = {}
        for p in self._call(self.exchange.fetch_positions):
            pnl, market = _dec(p.get("unrealizedPnl")), markets.get(p.get("symbol"))
            if pnl is None or not market:
                continue
            currency = str(market.get("settle") or market.get("quote"))
            by_currency[currency] = by_currency.get(currency, Decimal(0)) + pnl
        return by_currency

    def _wallets(self, info: Any) -> dict[str, Decimal]:
        """The exchange's own wallet balance per currency, where its balance
        answer has one: each asset's ``walletBalance`` (Binance futures'
        ``assets``, Bybit's ``coin`` list), unrealized P&L not in it."""
        found: dict[str, Decimal] = {}
        stack: list[tuple[Any, int]] = [(info, 0)]
        while stack:
            node, depth = stack.pop()
            if isinstance(node, dict):
                name = node.get("asset") or node.get("coin")
                value = _dec(node.get("walletBalance"))
                if isinstance(name, str) and value is not None:
                    found[self.exchange.safe_currency_code(name)] = value
                children = list(node.values())
            elif isinstance(node, list):
                children = node
            else:
                continue
            if depth < 4:
                stack.extend((child, depth + 1) for child in children)
        return found

    def funds(self) -> Funds:
        """Every currency the exchange reports (its total, free and used),
        totals in the base currency at the exchange's last prices (a
        currency it cannot price is listed, left out of the totals).

        Derivatives: each currency's cash is the wallet balance (the
        exchange's ``walletBalance`` where it reports one, else ccxt's total
        less the positions' unrealized P&L: ccxt's total is the margin
        balance), the open positions' unrealized P&L is ``unrealized_pnl``
        and equity = cash + unrealized P&L."""
        balance = self._balance()
        totals, free, used = balance.get("total") or {}, balance.get("free") or {}, balance.get("used") or {}
        unrealized = self._unrealized() if self.derivatives else {}
        wallets = self._wallets(balance.get("info")) if self.derivatives else {}
        lines = []
        for currency in sorted(set(totals) | set(wallets)):
            total = _dec(totals.get(currency)) or Decimal(0)
            if self.derivatives:
                total = wallets.get(currency, total - unrealized.get(currency, Decimal(0)))
            if total == 0 and currency != self.base_currency:
                continue
            lines.append(Balance(currency=str(currency), cash=total, available=_dec(free.get(currency))))
        if not any(b.currency == self.base_currency for b in lines):
            lines.append(Balance(currency=self.base_currency, cash=Decimal(0), available=Decimal(0)))
        rates = self.rates({b.currency for b in lines} | set(unrealized))
        priced = [b for b in lines if b.currency in rates]
        cash = sum((b.cash * rates[b.currency] for b in priced), Decimal(0))
        available = sum(((_dec(free.get(b.currency)) or Decimal(0)) * rates[b.currency] for b in priced), Decimal(0))
        margin_used = sum(((_dec(used.get(b.currency)) or Decimal(0)) * rates[b.currency] for b in priced), Decimal(0))
        pnl = sum((amount * rates[c] for c, amount in unrealized.items() if c in rates), Decimal(0)) if self.derivatives else None
        equity = cash + (pnl or Decimal(0))
        return Funds(
            currency=self.base_currency,
            cash=cash,
            margin_used=margin_used,
            margin_available=min(available, equity),
            equity=equity,
            balances=tuple(lines),
            buying_power=min(available, equity),
            rates=rates,
            raw=_raw(balance.get("info")),
            unrealized_pnl=pnl,
        )

    # --- market data ----------------------------------------------------------------------

    def quote(self, symbol: str) -> Quote:
        market = self.market_symbol(symbol)
        t = self._call(self.exchange.fetch_ticker, market)
        return self.quote_of(symbol, t)

    def quote_of(self, symbol: str, t: dict[str, Any]) -> Quote:
        last = _dec(t.get("last")) or _dec(t.get("close"))
        if not last:
            raise BrokerUnavailable(f"The exchange answered no price for {symbol}.")
        stamp = t.get("timestamp")
        return Quote(
            symbol=symbol,
            time=(int(stamp) / 1000) if stamp else time.time(),
            last=last,
            bid=_dec(t.get("bid")),
            ask=_dec(t.get("ask")),
            bid_size=_dec(t.get("bidVolume")),
            ask_size=_dec(t.get("askVolume")),
            volume=_dec(t.get("baseVolume")) or Decimal(0),
            day_open=_dec(t.get("open")),
            day_high=_dec(t.get("high")),
            day_low=_dec(t.get("low")),
            prev_close=_dec(t.get("previousClose")),
        )

    def tick_of(self, symbol: str, trade: dict[str, Any]) -> Tick | None:
        """A public trade (ccxt's trade structure) as a tick; None without a positive price and amount."""
        price, amount, stamp = _dec(trade.get("price")), _dec(trade.get("amount")), trade.get("timestamp")
        if not price or price <= 0 or amount is None or amount <= 0:
            return None
        return Tick(symbol=symbol, time=(int(stamp) / 1000) if stamp else time.time(), price=price, size=amount)

    def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """Several quotes in one call where the exchange has fetchTickers."""
        by_market = {self.market_symbol(s): s for s in symbols}
        if not by_market:
            return {}
        tickers = self.tickers(sorted(by_market))
        answer = {}
        for market, ours in by_market.items():
            if market in tickers:
                try:
                    answer[ours] = self.quote_of(ours, tickers[market])
                except BrokerUnavailable:
                    continue
        return answer

    def tickers(self, markets: list[str], *, before_call: Callable[[], None] | None = None) -> dict[str, dict[str, Any]]:
        """ccxt's tickers of ``markets`` (ccxt symbols): one fetchTickers call
        where the exchange has it, else one call per market; ``before_call``
        runs before each request (pacing)."""
        if self.exchange.has.get("fetchTickers"):
            if before_call is not None:
                before_call()
            return self._call(self.exchange.fetch_tickers, markets)
        answer = {}
        for market in markets:
            if before_call is not None:
                before_call()
            answer[market] = self._call(self.exchange.fetch_ticker, market)
        return answer

    def symbols_in_use(self) -> list[str]:
        """ccxt symbols the account trades through us, holds, or has working orders in."""
        return self._watched()

    def bars(
        self, symbol: str, timeframe: str = "1m", *, since: datetime | None = None, until: datetime | None = None, limit: int = 500
    ) -> list[Bar]:
        """OHLCV candles, oldest first (ccxt's timeframe names: 1m, 5m, 1h,
        1d...): one call, at most ``limit`` (1000) from ``since``, those
        opening before ``until`` (ccxt's ``until`` param, and filtered here
        for an exchange that ignores it)."""
        market = self.market_symbol(symbol)
        if timeframe not in (self.exchange.timeframes or {}):
            raise BrokerRejected(f"{self.venue} has no {timeframe} candles.")
        since_ms = int(since.timestamp() * 1000) if since else None
        until_ms = int(until.timestamp() * 1000) if until else None
        params = {"until": until_ms - 1} if until_ms is not None else {}
        rows = self._call(self.exchange.fetch_ohlcv, market, timeframe, since_ms, max(1, min(limit, HISTORY_PAGE)), params)
        bars = []
        for row in rows:
            o, h, low, c = (_dec(v) for v in row[1:5])
            if None in (o, h, low, c) or (until_ms is not None and int(row[0]) >= until_ms):
                continue
            bars.append(Bar(time=int(row[0]) // 1000, open=o, high=h, low=low, close=c, volume=_dec(row[5]) or Decimal(0)))  # type: ignore[arg-type]
        return bars

    def history(
        self, symbol: str, timeframe: str, *, start: datetime, end: datetime, before_call: Callable[[], None] | None = None
    ) -> Iterator[list[Bar]]:
        """The finished candles opening in [start, end), a page (one
        ``fetch_ohlcv`` call of up to 1000) at a time, oldest first;
        ``before_call`` runs before each request (pacing). The candle still
        forming now is left out (the live feed builds it)."""
        step = int(self.exchange.parse_timeframe(timeframe))
        end_s = min(int(end.timestamp()), int(time.time()) // step * step)  # before the candle forming now
        cursor = int(start.timestamp())
        while cursor < end_s:
            if before_call is not None:
                before_call()
            page = self.bars(
                symbol, timeframe, since=datetime.fromtimestamp(cursor, UTC), until=datetime.fromtimestamp(end_s, UTC), limit=HISTORY_PAGE
            )
            page = [b for b in page if b.time >= cursor]
            if not page:
                return
            yield page
            cursor = page[-1].time + step


def ccxt_broker_factory(account: BrokerAccount) -> CcxtBroker:
    return CcxtBroker(account)
