"""Binance's JSON, as its API documentation shows it (spot REST API
/api/v3 and USD-M futures /fapi), built from the fake's books."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from brokers.ccxt.fake.engine import FUTURES, LEVERAGE, SPOT, Account, Engine, Market, Order, ms, plain

RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
]


def _decimals(step: Decimal) -> int:
    return max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]


def spot_symbol(m: Market) -> dict[str, Any]:
    return {
        "symbol": m.symbol,
        "status": "TRADING",
        "baseAsset": m.base,
        "baseAssetPrecision": 8,
        "quoteAsset": m.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": plain(m.tick), "maxPrice": "1000000.00000000", "tickSize": plain(m.tick)},
            {"filterType": "LOT_SIZE", "minQty": plain(m.min_qty), "maxQty": "9000.00000000", "stepSize": plain(m.step)},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "100.00000000", "stepSize": "0.00000000"},
            {
                "filterType": "NOTIONAL",
                "minNotional": plain(m.min_notional),
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def futures_symbol(m: Market) -> dict[str, Any]:
    return {
        "symbol": m.symbol,
        "pair": m.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": m.base,
        "quoteAsset": m.quote,
        "marginAsset": m.quote,
        "pricePrecision": _decimals(m.tick),
        "quantityPrecision": _decimals(m.step),
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": ["PoW"],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": str(m.tick), "maxPrice": "4529764", "tickSize": str(m.tick)},
            {"filterType": "LOT_SIZE", "stepSize": str(m.step), "maxQty": "1000", "minQty": str(m.min_qty)},
            {"filterType": "MARKET_LOT_SIZE", "stepSize": str(m.step), "maxQty": "120", "minQty": str(m.min_qty)},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": str(m.min_notional)},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500", "multiplierDecimal": "4"},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


def exchange_info(engine: Engine, kind: str) -> dict[str, Any]:
    """exchangeInfo of ``kind``'s API (spot /api/v3, futures /fapi/v1): the
    engine's markets when its kind, none otherwise (the other API's list)."""
    markets = list(engine.markets.values()) if engine.kind == kind else []
    body: dict[str, Any] = {"timezone": "UTC", "serverTime": ms(), "rateLimits": RATE_LIMITS, "exchangeFilters": []}
    if kind == SPOT:
        body["symbols"] = [spot_symbol(m) for m in markets]
    else:
        body["futuresType"] = "U_MARGINED"
        body["assets"] = [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}]
        body["symbols"] = [futures_symbol(m) for m in markets]
    return body


def _status(order: Order) -> str:
    return order.status


def spot_order(order: Order, *, full: bool = False, cancel_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "price": plain(order.price),
        "origQty": plain(order.qty),
        "executedQty": plain(order.executed),
        "cummulativeQuoteQty": plain(order.quote_qty),
        "status": _status(order),
        "timeInForce": order.time_in_force,
        "type": order.type,
        "side": order.side,
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }
    if cancel_id is not None:
        body["origClientOrderId"] = order.client_order_id
        body["clientOrderId"] = cancel_id
        body["transactTime"] = order.updated
        return body
    if order.stop:  # Binance's conditional field: present where the order has a stop price
        body["stopPrice"] = plain(order.stop_price)
    if full:
        body["transactTime"] = order.created
        body["workingTime"] = order.working_time
        body["fills"] = [
            {
                "price": plain(f["price"]),
                "qty": plain(f["qty"]),
                "commission": plain(f["commission"]),
                "commissionAsset": f["commission_asset"],
                "tradeId": f["id"],
            }
            for f in order.fills
        ]
        return body
    body.update(
        {
            "stopPrice": plain(order.stop_price),
            "icebergQty": "0.00000000",
            "time": order.created,
            "updateTime": order.updated,
            "isWorking": order.working_time != -1,
            "workingTime": order.working_time,
            "origQuoteOrderQty": "0.00000000",
        }
    )
    return body


def futures_order(order: Order, *, with_time: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": _status(order),
        "clientOrderId": order.client_order_id,
        "price": str(order.price),
        "avgPrice": str(order.avg_price) if order.executed else "0",
        "origQty": str(order.qty),
        "executedQty": str(order.executed),
        "cumQty": str(order.executed),
        "cumQuote": str(order.quote_qty),
        "timeInForce": order.time_in_force,
        "type": order.type,
        "reduceOnly": order.reduce_only,
        "closePosition": False,
        "side": order.side,
        "positionSide": "BOTH",
        "stopPrice": "0",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": order.type,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0,
        "updateTime": order.updated,
    }
    if with_time:
        body["time"] = order.created
    return body


def order_payload(engine: Engine, order: Order) -> dict[str, Any]:
    return spot_order(order) if engine.kind == SPOT else futures_order(order)


def trades(engine: Engine, orders: list[Order]) -> list[dict[str, Any]]:
    rows = []
    for order in orders:
        for f in order.fills:
            if engine.kind == SPOT:
                rows.append(
                    {
                        "symbol": order.symbol,
                        "id": f["id"],
                        "orderId": order.order_id,
                        "orderListId": -1,
                        "price": plain(f["price"]),
                        "qty": plain(f["qty"]),
                        "quoteQty": plain(f["quote_qty"]),
                        "commission": plain(f["commission"]),
                        "commissionAsset": f["commission_asset"],
                        "time": f["time"],
                        "isBuyer": order.side == "BUY",
                        "isMaker": f["maker"],
                        "isBestMatch": True,
                    }
                )
            else:
                rows.append(
                    {
                        "buyer": order.side == "BUY",
                        "commission": str(f["commission"]),
                        "commissionAsset": f["commission_asset"],
                        "id": f["id"],
                        "maker": f["maker"],
                        "orderId": order.order_id,
                        "price": str(f["price"]),
                        "qty": str(f["qty"]),
                        "quoteQty": str(f["quote_qty"]),
                        "realizedPnl": str(f["realized"]),
                        "side": order.side,
                        "positionSide": "BOTH",
                        "symbol": order.symbol,
                        "time": f["time"],
                    }
                )
    rows.sort(key=lambda r: r["id"])
    return rows


def spot_account(account: Account) -> dict[str, Any]:
    assets = sorted(set(account.balances) | set(account.locked))
    return {
        "makerCommission": 10,
        "takerCommission": 10,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000", "seller": "0.00000000"},
        "canTrade": True,
        "canWithdraw": True,
        "canDeposit": True,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": account.updated,
        "accountType": "SPOT",
        "balances": [
            {"asset": a, "free": plain(account.balances.get(a, Decimal(0))), "locked": plain(account.locked.get(a, Decimal(0)))}
            for a in assets
        ],
        "permissions": ["SPOT"],
        "uid": 354937868,
    }


def futures_account(engine: Engine, account: Account) -> dict[str, Any]:
    """GET /fapi/v3/account."""
    wallet = account.balances.get("USDT", Decimal(0))
    unrealized = engine.unrealized(account)
    margin = engine.initial_margin(account)
    available = engine.available(account)
    assets = []
    for asset, balance in sorted(account.balances.items()):
        upnl = unrealized if asset == "USDT" else Decimal(0)
        im = margin if asset == "USDT" else Decimal(0)
        assets.append(
            {
                "asset": asset,
                "walletBalance": plain(balance),
                "unrealizedProfit": plain(upnl),
                "marginBalance": plain(balance + upnl),
                "maintMargin": plain(im / 4),
                "initialMargin": plain(im),
                "positionInitialMargin": plain(im),
                "openOrderInitialMargin": "0.00000000",
                "crossWalletBalance": plain(balance),
                "crossUnPnl": plain(upnl),
                "availableBalance": plain(available if asset == "USDT" else balance),
                "maxWithdrawAmount": plain(available if asset == "USDT" else balance),
                "updateTime": account.updated,
            }
        )
    return {
        "totalInitialMargin": plain(margin),
        "totalMaintMargin": plain(margin / 4),
        "totalWalletBalance": plain(wallet),
        "totalUnrealizedProfit": plain(unrealized),
        "totalMarginBalance": plain(wallet + unrealized),
        "totalPositionInitialMargin": plain(margin),
        "totalOpenOrderInitialMargin": "0.00000000",
        "totalCrossWalletBalance": plain(wallet),
        "totalCrossUnPnl": plain(unrealized),
        "availableBalance": plain(available),
        "maxWithdrawAmount": plain(available),
        "assets": assets,
        "positions": [
            {
                "symbol": symbol,
                "positionSide": "BOTH",
                "positionAmt": str(p.qty),
                "unrealizedProfit": plain((engine.markets[symbol].price - p.entry) * p.qty),
                "isolatedMargin": "0",
                "notional": plain(p.qty * engine.markets[symbol].price),
                "isolatedWallet": "0",
                "initialMargin": plain(abs(p.qty) * engine.markets[symbol].price / LEVERAGE),
                "maintMargin": plain(abs(p.qty) * engine.markets[symbol].price / LEVERAGE / 4),
                "updateTime": p.updated,
            }
            for symbol, p in sorted(account.positions.items())
            if p.qty
        ],
    }


def position_risk(engine: Engine, account: Account, symbol: str | None) -> list[dict[str, Any]]:
    """GET /fapi/v3/positionRisk: open positions only (v3 leaves out the empty ones)."""
    rows = []
    for sym, p in sorted(account.positions.items()):
        if not p.qty or (symbol and sym != symbol):
            continue
        mark = engine.markets[sym].price
        notional = p.qty * mark
        rows.append(
            {
                "symbol": sym,
                "positionSide": "BOTH",
                "positionAmt": str(p.qty),
                "entryPrice": str(p.entry),
                "breakEvenPrice": str(p.entry),
                "markPrice": plain(mark),
                "unRealizedProfit": plain((mark - p.entry) * p.qty),
                "liquidationPrice": "0",
                "isolatedMargin": "0",
                "notional": plain(notional),
                "marginAsset": "USDT",
                "isolatedWallet": "0",
                "initialMargin": plain(abs(notional) / LEVERAGE),
                "maintMargin": plain(abs(notional) / LEVERAGE / 4),
                "positionInitialMargin": plain(abs(notional) / LEVERAGE),
                "openOrderInitialMargin": "0",
                "adl": 1,
                "bidNotional": "0",
                "askNotional": "0",
                "updateTime": p.updated,
            }
        )
    return rows


def leverage_brackets(engine: Engine) -> list[dict[str, Any]]:
    return [
        {
            "symbol": symbol,
            "notionalCoef": 1.0,
            "brackets": [
                {"bracket": 1, "initialLeverage": 125, "notionalCap": 50000, "notionalFloor": 0, "maintMarginRatio": 0.004, "cum": 0.0},
                {
                    "bracket": 2,
                    "initialLeverage": 100,
                    "notionalCap": 600000,
                    "notionalFloor": 50000,
                    "maintMarginRatio": 0.005,
                    "cum": 50.0,
                },
            ],
        }
        for symbol in engine.markets
    ]


def ticker(engine: Engine, m: Market) -> dict[str, Any]:
    now = ms()
    price = m.price
    body: dict[str, Any] = {
        "symbol": m.symbol,
        "priceChange": "0.00000000",
        "priceChangePercent": "0.000",
        "weightedAvgPrice": plain(price),
        "lastPrice": plain(price),
        "lastQty": plain(m.step),
        "openPrice": plain(price),
        "highPrice": plain(price),
        "lowPrice": plain(price),
        "volume": "0.00000000",
        "quoteVolume": "0.00000000",
        "openTime": now - 86_400_000,
        "closeTime": now,
        "firstId": 1,
        "lastId": 1,
        "count": 1,
    }
    if engine.kind == SPOT:
        body.update(
            {
                "prevClosePrice": plain(price),
                "bidPrice": plain(price - m.tick),
                "bidQty": "1.00000000",
                "askPrice": plain(price + m.tick),
                "askQty": "1.00000000",
            }
        )
    return body


INTERVALS = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400, "1d": 86400}


def klines(m: Market, interval: str, limit: int, start: int | None = None, end: int | None = None) -> list[list[Any]]:
    """Flat candles at the current price (the fake keeps no history), oldest
    first, as Binance selects them by open time: from ``startTime`` on (at most
    ``limit``), else the ``limit`` latest up to ``endTime`` (else up to now);
    the current, unfinished candle included."""
    step = INTERVALS[interval] * 1000
    now = ms()
    last = now - now % step
    if end is not None:
        last = min(last, end - end % step)
    if start is not None:
        first = start + (-start) % step
        opens = [first + i * step for i in range(max(0, min(limit, (last - first) // step + 1)))]
    else:
        opens = [last - i * step for i in range(limit - 1, -1, -1)]
    price = plain(m.price)
    return [[t, price, price, price, price, "1.00000000", t + step - 1, price, 1, "0.50000000", price, "0"] for t in opens]


__all__ = ["FUTURES", "SPOT"]
