"""The fake exchange's books: accounts (API key, secret, balances, positions),
markets with a price each, orders and trades; market orders fill at once at
the price, limit orders when the price reaches them. Answers are Binance's
own JSON (spot /api/v3, USD-M futures /fapi), built in payloads.py.

Errors are ``Rejected(status, code, msg)`` with Binance's codes and messages
(ccxt's ``binance.handle_errors`` maps them by the code or the exact message)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

SPOT = "spot"
FUTURES = "futures"  # Binance USD-M (ccxt binanceusdm)
KINDS = (SPOT, FUTURES)
MAX_ORDERS = 20_000  # per fake: the oldest final orders go first
SPOT_FEE = Decimal("0.001")  # charged in what the trade brings in (Binance spot's rule without BNB)
BNB_FEE = Decimal("0.00075")  # charged in BNB while the account holds some (Binance's "pay fees with BNB")
FUTURES_FEE = Decimal("0.0004")  # charged in the margin asset (USDT)
LEVERAGE = Decimal(20)
# Binance spot's conditional orders: STOP_LOSS* trigger a buy when the price rises to the stop, a sell
# when it falls to it; TAKE_PROFIT* the other way round; *_LIMIT ones then rest at their price.
STOP_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
LIMIT_TYPES = ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
# USD-M futures' conditional types, moved to the Algo Order API (POST /fapi/v1/algoOrder) in December 2025.
ALGO_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")


class Rejected(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def ms() -> int:
    return int(time.time() * 1000)


def plain(value: Decimal) -> str:
    """Binance's number strings: fixed point, 8 decimals."""
    return f"{value.quantize(Decimal('0.00000001')):f}"


@dataclass
class Market:
    symbol: str  # BTCUSDT
    base: str
    quote: str
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    min_notional: Decimal
    price: Decimal


@dataclass
class Order:
    order_id: int
    client_order_id: str
    api_key: str
    symbol: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT | STOP_LOSS | STOP_LOSS_LIMIT | TAKE_PROFIT | TAKE_PROFIT_LIMIT
    time_in_force: str
    qty: Decimal
    price: Decimal
    reduce_only: bool
    created: int
    updated: int
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    quote_qty: Decimal = Decimal(0)
    fills: list[dict[str, Any]] = field(default_factory=list)
    stop_price: Decimal = Decimal(0)  # spot STOP_LOSS*/TAKE_PROFIT* only
    working_time: int = -1  # Binance's workingTime: -1 while a stop waits for its trigger

    @property
    def stop(self) -> bool:
        return self.type in STOP_TYPES

    @property
    def limit(self) -> bool:
        """Rests at its price (a stop-limit once triggered)."""
        return self.type in LIMIT_TYPES and self.working_time != -1

    @property
    def open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def avg_price(self) -> Decimal:
        return self.quote_qty / self.executed if self.executed else Decimal(0)


@dataclass
class Position:
    qty: Decimal = Decimal(0)  # signed
    entry: Decimal = Decimal(0)
    updated: int = 0


@dataclass
class Account:
    api_key: str
    secret: str
    balances: dict[str, Decimal]  # spot: free; futures: wallet balance
    locked: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    updated: int = field(default_factory=ms)


SPOT_MARKETS = (
    Market("BTCUSDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"), Decimal(5), Decimal(50000)),
    Market("ETHUSDT", "ETH", "USDT", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"), Decimal(5), Decimal(3000)),
    Market("ETHBTC", "ETH", "BTC", Decimal("0.00001"), Decimal("0.0001"), Decimal("0.0001"), Decimal("0.0001"), Decimal("0.06")),
    Market("BNBUSDT", "BNB", "USDT", Decimal("0.01"), Decimal("0.001"), Decimal("0.001"), Decimal(5), Decimal(600)),
)
FUTURES_MARKETS = (
    Market("BTCUSDT", "BTC", "USDT", Decimal("0.10"), Decimal("0.001"), Decimal("0.001"), Decimal(100), Decimal(50000)),
    Market("ETHUSDT", "ETH", "USDT", Decimal("0.01"), Decimal("0.001"), Decimal("0.001"), Decimal(20), Decimal(3000)),
)


class Engine:
    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        self.kind = kind
        self.lock = threading.RLock()
        self.markets = {m.symbol: Market(**m.__dict__) for m in (SPOT_MARKETS if kind == SPOT else FUTURES_MARKETS)}
        self.accounts: dict[str, Account] = {}
        self.orders: dict[int, Order] = {}
        self._ids = itertools.count(1000001)
        self._trade_ids = itertools.count(500001)
        # called with (symbol, price) after every set_price, outside the lock (the market streams)
        self.price_listeners: list[Callable[[str, Decimal], None]] = []

    # --- set-up ----------------------------------------------------------------------------

    def add_account(self, api_key: str, secret: str, balances: dict[str, Decimal]) -> None:
        with self.lock:
            self.accounts[api_key] = Account(api_key, secret, {k: Decimal(v) for k, v in balances.items()})

    def market(self, symbol: str) -> Market:
        found = self.markets.get(symbol or "")
        if found is None:
            raise Rejected(400, -1121, "Invalid symbol.")
        return found

    def set_price(self, symbol: str, price: Decimal) -> None:
        with self.lock:
            market = self.market(symbol)
            market.price = Decimal(price)
            for order in list(self.orders.values()):
                if not order.open or order.symbol != symbol:
                    continue
                if order.stop and order.working_time == -1:
                    if not self._triggers(order, market.price):
                        continue
                    order.working_time = order.updated = ms()
                    if not order.limit:  # a stop-market: a market order now
                        self._fill(order, order.qty - order.executed, market.price, maker=False)
                        continue
                    if self._crosses(order, market.price):  # a stop-limit marketable at once: a taker
                        self._fill(order, order.qty - order.executed, market.price, maker=False)
                        continue
                if self._crosses(order, market.price):
                    self._fill(order, order.qty - order.executed, order.price, maker=True)
        for listener in list(self.price_listeners):
            listener(symbol, Decimal(price))

    # --- orders ----------------------------------------------------------------------------

    def by_client_id(self, api_key: str, symbol: str, client_order_id: str) -> Order | None:
        for order in self.orders.values():
            if order.api_key == api_key and order.symbol == symbol and order.client_order_id == client_order_id:
                return order
        return None

    def find(self, api_key: str, symbol: str, order_id: str | None, client_order_id: str | None) -> Order:
        self.market(symbol)
        order = None
        if order_id:
            try:
                candidate = self.orders.get(int(order_id))
            except ValueError:
                raise Rejected(400, -1100, "Illegal characters found in parameter 'orderId'.") from None
            if candidate is not None and candidate.api_key == api_key and candidate.symbol == symbol:
                order = candidate
        elif client_order_id:
            order = self.by_client_id(api_key, symbol, client_order_id)
        else:
            raise Rejected(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if order is None:
            raise Rejected(400, -2013, "Order does not exist.")
        return order

    def place(
        self,
        account: Account,
        *,
        symbol: str,
        side: str,
        type_: str,
        qty: Decimal,
        price: Decimal | None,
        time_in_force: str,
        client_order_id: str,
        reduce_only: bool,
        stop_price: Decimal | None = None,
    ) -> Order:
        with self.lock:
            market = self.market(symbol)
            if side not in ("BUY", "SELL"):
                raise Rejected(400, -1117, "Invalid side.")
            if self.kind == FUTURES and type_ in ALGO_TYPES:
                raise Rejected(400, -4120, "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.")
            if type_ not in ("MARKET", "LIMIT") + (STOP_TYPES if self.kind == SPOT else ()):
                raise Rejected(400, -1116, "Invalid orderType.")
            stop = type_ in STOP_TYPES
            if stop:
                if stop_price is None:
                    raise Rejected(400, -1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed.")
                if stop_price <= 0 or stop_price % market.tick:
                    raise Rejected(400, -1013, "Filter failure: PRICE_FILTER")
            elif stop_price is not None:
                raise Rejected(400, -1106, "Parameter 'stopPrice' sent when not required.")
            if qty <= 0 or qty % market.step:
                raise Rejected(400, -1013, "Filter failure: LOT_SIZE")
            if qty < market.min_qty:
                raise Rejected(400, -1013, "Filter failure: LOT_SIZE")
            if type_ in LIMIT_TYPES:
                if price is None or price <= 0 or price % market.tick:
                    raise Rejected(400, -1013, "Filter failure: PRICE_FILTER")
                if time_in_force not in ("GTC", "IOC", "FOK", "GTX"):
                    raise Rejected(400, -1115, "Invalid timeInForce.")
            exec_price = price if type_ in LIMIT_TYPES and price is not None else (stop_price if stop and stop_price else market.price)
            if qty * exec_price < market.min_notional and not reduce_only:
                if self.kind == SPOT:
                    raise Rejected(400, -1013, "Filter failure: NOTIONAL")
                raise Rejected(
                    400, -4164, f"Order's notional must be no smaller than {market.min_notional} (unless you choose reduce only)."
                )
            if client_order_id and self.by_client_id(account.api_key, symbol, client_order_id):
                if self.kind == SPOT:
                    raise Rejected(400, -2010, "Duplicate order sent.")
                raise Rejected(400, -4116, "ClientOrderId is duplicated.")
            position = account.positions.get(symbol, Position())
            if reduce_only:
                if self.kind == SPOT:
                    raise Rejected(400, -1104, "Not all sent parameters were read; read '13' parameter(s) but was sent '14'.")
                reducing = (side == "SELL" and position.qty > 0) or (side == "BUY" and position.qty < 0)
                if not reducing or qty > abs(position.qty):
                    raise Rejected(400, -2022, "ReduceOnly Order is rejected.")
            if stop and self._triggers_at(type_, side, stop_price or Decimal(0), market.price):
                raise Rejected(400, -2010, "Stop price would trigger immediately.")
            self._reserve(account, market, side, qty, exec_price, reduce_only)
            now = ms()
            order = Order(
                order_id=next(self._ids),
                client_order_id=client_order_id or f"x-fake{next(self._ids)}",
                api_key=account.api_key,
                symbol=symbol,
                side=side,
                type=type_,
                time_in_force=time_in_force if type_ in LIMIT_TYPES else "GTC",
                qty=qty,
                price=price if type_ in LIMIT_TYPES and price is not None else Decimal(0),
                reduce_only=reduce_only,
                created=now,
                updated=now,
                stop_price=stop_price if stop and stop_price is not None else Decimal(0),
                working_time=-1 if stop else now,
            )
            self.orders[order.order_id] = order
            self._trim()
            if stop:
                return order  # waits for its trigger (set_price)
            if type_ == "MARKET" or self._crosses(order, market.price):
                self._fill(order, qty, market.price, maker=False)
            elif time_in_force in ("IOC", "FOK"):
                self._release(order)
                order.status = "EXPIRED"
            return order

    def cancel(self, account: Account, symbol: str, order_id: str | None, client_order_id: str | None) -> Order:
        with self.lock:
            order = self.find(account.api_key, symbol, order_id, client_order_id)
            if not order.open:
                raise Rejected(400, -2011, "Unknown order sent.")
            self._release(order)
            order.status = "CANCELED"
            order.updated = ms()
            return order

    def amend(
        self, account: Account, symbol: str, order_id: str | None, client_order_id: str | None, qty: Decimal, price: Decimal
    ) -> Order:
        """Futures PUT /fapi/v1/order: a limit order's quantity and price."""
        with self.lock:
            order = self.find(account.api_key, symbol, order_id, client_order_id)
            market = self.market(symbol)
            if not order.open or order.type != "LIMIT":
                raise Rejected(400, -2013, "Order does not exist.")
            if qty <= order.executed or qty % market.step or price <= 0 or price % market.tick:
                raise Rejected(400, -4028, "Price or quantity is invalid.")
            order.qty, order.price, order.updated = qty, price, ms()
            if self._crosses(order, market.price):
                self._fill(order, qty - order.executed, market.price, maker=False)
            return order

    # --- money -----------------------------------------------------------------------------

    def _reserve(self, account: Account, market: Market, side: str, qty: Decimal, price: Decimal, reduce_only: bool) -> None:
        if self.kind == SPOT:
            asset, need = (market.quote, qty * price * (1 + SPOT_FEE)) if side == "BUY" else (market.base, qty)
            if account.balances.get(asset, Decimal(0)) < need:
                raise Rejected(400, -2010, "Account has insufficient balance for requested action.")
            account.balances[asset] -= need
            account.locked[asset] = account.locked.get(asset, Decimal(0)) + need
        elif not reduce_only and self.available(account) < qty * price / LEVERAGE:
            raise Rejected(400, -2019, "Margin is insufficient.")

    def _release(self, order: Order) -> None:
        if self.kind != SPOT:
            return
        account = self.accounts[order.api_key]
        market = self.markets[order.symbol]
        remaining = order.qty - order.executed
        if order.side == "BUY":
            asset, amount = market.quote, remaining * self._reserved_price(order, order.price) * (1 + SPOT_FEE)
        else:
            asset, amount = market.base, remaining
        amount = min(amount, account.locked.get(asset, Decimal(0)))
        account.locked[asset] = account.locked.get(asset, Decimal(0)) - amount
        account.balances[asset] = account.balances.get(asset, Decimal(0)) + amount

    @staticmethod
    def _triggers_at(type_: str, side: str, stop: Decimal, price: Decimal) -> bool:
        rises = (side == "BUY") == type_.startswith("STOP_LOSS")  # STOP_LOSS buy / TAKE_PROFIT sell: on a rise
        return price >= stop if rises else price <= stop

    def _triggers(self, order: Order, price: Decimal) -> bool:
        return self._triggers_at(order.type, order.side, order.stop_price, price)

    @staticmethod
    def _reserved_price(order: Order, price: Decimal) -> Decimal:
        """The price the order's funds were locked at: its limit, a stop-market's stop, else the fill's."""
        if order.type in LIMIT_TYPES:
            return order.price
        return order.stop_price if order.stop else price

    def _crosses(self, order: Order, price: Decimal) -> bool:
        if not order.limit:
            return False
        return price <= order.price if order.side == "BUY" else price >= order.price

    def _fill(self, order: Order, qty: Decimal, price: Decimal, *, maker: bool) -> None:
        account = self.accounts[order.api_key]
        market = self.markets[order.symbol]
        now = ms()
        notional = qty * price
        if self.kind == SPOT:
            reserved_price = self._reserved_price(order, price)
            bnb = self.markets.get("BNBUSDT")
            bnb_fee = (
                (notional * BNB_FEE / bnb.price).quantize(Decimal("0.00000001"), ROUND_DOWN) if bnb and market.quote == "USDT" else None
            )
            if bnb_fee is not None and bnb_fee > 0 and account.balances.get("BNB", Decimal(0)) >= bnb_fee and order.symbol != "BNBUSDT":
                if order.side == "BUY":
                    account.locked[market.quote] = account.locked.get(market.quote, Decimal(0)) - qty * reserved_price * (1 + SPOT_FEE)
                    account.balances[market.quote] = (
                        account.balances.get(market.quote, Decimal(0)) + qty * reserved_price * (1 + SPOT_FEE) - notional
                    )
                    account.balances[market.base] = account.balances.get(market.base, Decimal(0)) + qty
                else:
                    account.locked[market.base] = account.locked.get(market.base, Decimal(0)) - qty
                    account.balances[market.quote] = account.balances.get(market.quote, Decimal(0)) + notional
                account.balances["BNB"] -= bnb_fee
                fee, fee_asset = bnb_fee, "BNB"
            elif order.side == "BUY":
                fee, fee_asset = (qty * SPOT_FEE).quantize(Decimal("0.00000001"), ROUND_DOWN), market.base
                account.locked[market.quote] = account.locked.get(market.quote, Decimal(0)) - qty * reserved_price * (1 + SPOT_FEE)
                account.balances[market.quote] = (
                    account.balances.get(market.quote, Decimal(0)) + qty * reserved_price * (1 + SPOT_FEE) - notional
                )
                account.balances[market.base] = account.balances.get(market.base, Decimal(0)) + qty - fee
            else:
                fee, fee_asset = (notional * SPOT_FEE).quantize(Decimal("0.00000001"), ROUND_DOWN), market.quote
                account.locked[market.base] = account.locked.get(market.base, Decimal(0)) - qty
                account.balances[market.quote] = account.balances.get(market.quote, Decimal(0)) + notional - fee
            realized = Decimal(0)
        else:
            fee, fee_asset = (notional * FUTURES_FEE).quantize(Decimal("0.00000001"), ROUND_DOWN), market.quote
            realized = self._position_change(account, order.symbol, qty if order.side == "BUY" else -qty, price, now)
            account.balances[market.quote] = account.balances.get(market.quote, Decimal(0)) + realized - fee
        order.executed += qty
        order.quote_qty += notional
        order.status = "FILLED" if order.executed >= order.qty else "PARTIALLY_FILLED"
        order.updated = now
        account.updated = now
        order.fills.append(
            {
                "id": next(self._trade_ids),
                "price": price,
                "qty": qty,
                "quote_qty": notional,
                "commission": fee,
                "commission_asset": fee_asset,
                "time": now,
                "maker": maker,
                "realized": realized,
            }
        )

    def _position_change(self, account: Account, symbol: str, delta: Decimal, price: Decimal, now: int) -> Decimal:
        position = account.positions.setdefault(symbol, Position())
        realized = Decimal(0)
        if position.qty == 0 or (position.qty > 0) == (delta > 0):
            total = position.qty + delta
            position.entry = (position.entry * abs(position.qty) + price * abs(delta)) / abs(total)
            position.qty = total
        else:
            closing = min(abs(delta), abs(position.qty))
            sign = 1 if position.qty > 0 else -1
            realized = (price - position.entry) * closing * sign
            position.qty += delta
            if position.qty == 0:
                position.entry = Decimal(0)
            elif (position.qty > 0) != (sign > 0):
                position.entry = price  # flipped: the rest opened at this price
        position.updated = now
        return realized

    def unrealized(self, account: Account) -> Decimal:
        return sum(
            ((self.markets[s].price - p.entry) * p.qty for s, p in account.positions.items() if p.qty),
            Decimal(0),
        )

    def initial_margin(self, account: Account) -> Decimal:
        return sum((abs(p.qty) * self.markets[s].price / LEVERAGE for s, p in account.positions.items() if p.qty), Decimal(0))

    def available(self, account: Account) -> Decimal:
        wallet = account.balances.get("USDT", Decimal(0))
        return wallet + self.unrealized(account) - self.initial_margin(account)

    def _trim(self) -> None:
        if len(self.orders) <= MAX_ORDERS:
            return
        for order_id in [o.order_id for o in self.orders.values() if not o.open][: len(self.orders) - MAX_ORDERS]:
            del self.orders[order_id]

    # --- snapshots -------------------------------------------------------------------------

    def orders_snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "order_id": o.order_id,
                    "client_order_id": o.client_order_id,
                    "symbol": o.symbol,
                    "side": o.side,
                    "type": o.type,
                    "qty": o.qty,
                    "price": o.price,
                    "stop_price": o.stop_price,
                    "status": o.status,
                    "executed": o.executed,
                    "reduce_only": o.reduce_only,
                }
                for o in self.orders.values()
            ]
