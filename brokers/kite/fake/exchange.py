"""The fake Kite's state: apps and sessions, instruments and prices, orders
with their history, trades, holdings and margins, and the matching that moves
orders (market at once at the last price, limit when the price crosses, SL /
SL-M once the trigger is touched; a cover order's entry, once complete,
places its SL-M stop-loss leg, whose cancel exits at the market).

Every order status change is told to ``on_order`` (the server sends it to
``order_listeners`` and the postback URL) in Kite's postback shape."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

VARIETIES = ("regular", "amo", "co", "iceberg", "auction")
PRODUCTS = ("CNC", "NRML", "MIS", "MTF")
ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")
VALIDITIES = ("DAY", "IOC", "TTL")
FINAL = ("COMPLETE", "CANCELLED", "REJECTED")
CSV_COLUMNS = (
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "last_price",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
)


class KiteError(Exception):
    """An error answer: HTTP status, Kite's error_type and message."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def input_error(message: str) -> KiteError:
    return KiteError(400, "InputException", message)


def now_ist() -> str:
    return datetime.now(IST).strftime(TIME_FORMAT)


@dataclass
class App:
    api_key: str
    api_secret: str
    user_id: str
    redirect_url: str = ""
    request_tokens: set[str] = field(default_factory=set)
    access_tokens: set[str] = field(default_factory=set)


@dataclass
class Account:
    user_id: str
    cash: Decimal = Decimal(1_000_000)
    commodity_cash: Decimal = Decimal(0)
    holdings: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Instrument:
    token: int
    exchange: str
    tradingsymbol: str
    name: str = ""
    last_price: Decimal = Decimal(0)
    expiry: str = ""
    strike: Decimal = Decimal(0)
    tick_size: Decimal = Decimal("0.05")
    lot_size: int = 1
    instrument_type: str = "EQ"
    segment: str = ""

    def csv_row(self) -> list[str]:
        return [
            str(self.token),
            str(self.token >> 8),
            self.tradingsymbol,
            self.name,
            str(self.last_price),
            self.expiry,
            str(self.strike),
            str(self.tick_size),
            str(self.lot_size),
            self.instrument_type,
            self.segment or self.exchange,
            self.exchange,
        ]


def _num(value: Decimal) -> float | int:
    return int(value) if value == value.to_integral_value() else float(value)


class Exchange:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.apps: dict[str, App] = {}
        self.accounts: dict[str, Account] = {}
        self.instruments: dict[int, Instrument] = {}
        self.by_symbol: dict[tuple[str, str], int] = {}
        self.orders: dict[str, list[dict[str, Any]]] = {}  # order id -> its states, oldest first
        self.order_user: dict[str, str] = {}
        self.trades: list[dict[str, Any]] = []
        self.candles: dict[tuple[int, str], list[list[Any]]] = {}
        self.reject_next: str = ""  # a message: the next order is REJECTED by the RMS with it
        self._next_order = 251205000000000
        self._next_trade = 10000000
        self.on_order: Callable[[str, dict[str, Any]], None] = lambda user_id, order: None

    # --- set-up ----------------------------------------------------------------------

    def add_app(self, api_key: str, api_secret: str, user_id: str, *, redirect_url: str = "", cash: Decimal | int = 1_000_000) -> App:
        with self.lock:
            app = App(api_key=api_key, api_secret=api_secret, user_id=user_id, redirect_url=redirect_url)
            self.apps[api_key] = app
            self.accounts.setdefault(user_id, Account(user_id=user_id, cash=Decimal(cash)))
            return app

    def add_instrument(self, instrument: Instrument) -> Instrument:
        with self.lock:
            self.instruments[instrument.token] = instrument
            self.by_symbol[(instrument.exchange, instrument.tradingsymbol)] = instrument.token
            return instrument

    def set_price(self, exchange: str, tradingsymbol: str, price: Decimal | int | str) -> None:
        with self.lock:
            self.instrument(exchange, tradingsymbol).last_price = Decimal(str(price))
            self._match_all()

    def instrument(self, exchange: str, tradingsymbol: str) -> Instrument:
        token = self.by_symbol.get((exchange, tradingsymbol))
        if token is None:
            raise input_error(f"Invalid instrument {exchange}:{tradingsymbol}.")
        return self.instruments[token]

    # --- sessions ----------------------------------------------------------------------

    def issue_request_token(self, api_key: str) -> str:
        with self.lock:
            token = secrets.token_hex(16)
            self.apps[api_key].request_tokens.add(token)
            return token

    def app_of(self, api_key: str, access_token: str) -> App:
        app = self.apps.get(api_key)
        if app is None or access_token not in app.access_tokens:
            raise KiteError(403, "TokenException", "Incorrect `api_key` or `access_token`.")
        return app

    def expire_sessions(self) -> None:
        """Every access token ends (as at 06:00, or a logout elsewhere)."""
        with self.lock:
            for app in self.apps.values():
                app.access_tokens.clear()

    # --- orders ------------------------------------------------------------------------

    def order(self, user_id: str, order_id: str) -> list[dict[str, Any]]:
        history = self.orders.get(order_id)
        if history is None or self.order_user.get(order_id) != user_id:
            raise KiteError(400, "InputException", "Couldn't find that `order_id`.")
        return history

    def place(self, user_id: str, variety: str, form: dict[str, str]) -> str:
        with self.lock:
            spec = self._validated(variety, form)
            inst = self.instrument(spec["exchange"], spec["tradingsymbol"])
            self._next_order += 1
            order_id = str(self._next_order)
            now = now_ist()
            order: dict[str, Any] = {
                "placed_by": user_id,
                "order_id": order_id,
                "exchange_order_id": None,
                "parent_order_id": None,
                "status": "PUT ORDER REQ RECEIVED",
                "status_message": None,
                "status_message_raw": None,
                "order_timestamp": now,
                "exchange_update_timestamp": None,
                "exchange_timestamp": None,
                "variety": variety,
                "modified": False,
                "exchange": inst.exchange,
                "tradingsymbol": inst.tradingsymbol,
                "instrument_token": inst.token,
                "order_type": spec["order_type"],
                "transaction_type": spec["transaction_type"],
                "validity": spec["validity"],
                "validity_ttl": spec.get("validity_ttl", 0),
                "product": spec["product"],
                "quantity": spec["quantity"],
                "disclosed_quantity": 0,
                "price": _num(spec["price"]),
                "trigger_price": _num(spec["trigger_price"]),
                "average_price": 0,
                "filled_quantity": 0,
                "pending_quantity": spec["quantity"],
                "cancelled_quantity": 0,
                "market_protection": 0,
                "meta": {"iceberg": {"legs": spec["iceberg_legs"], "total_quantity": spec["quantity"]}} if variety == "iceberg" else {},
                "tag": spec["tag"] or None,
                "tags": [spec["tag"]] if spec["tag"] else [],
                "guid": secrets.token_hex(8),
            }
            self.orders[order_id] = [order]
            self.order_user[order_id] = user_id
            self._change(order_id, status="VALIDATION PENDING", notify=False)
            if self.reject_next:
                message, self.reject_next = self.reject_next, ""
                self._change(order_id, status="REJECTED", status_message=message, pending_quantity=0)
                return order_id
            value = spec["price"] if spec["price"] else inst.last_price
            account = self.accounts[user_id]
            if spec["transaction_type"] == "BUY" and value * spec["quantity"] > self._available(account):
                self._change(
                    order_id,
                    status="REJECTED",
                    status_message="Insufficient funds. Required margin is more than available margin.",
                    pending_quantity=0,
                )
                return order_id
            self._change(order_id, status="OPEN PENDING", notify=False)
            if variety == "amo":
                self._change(order_id, status="AMO REQ RECEIVED")
                return order_id
            waiting = spec["order_type"] in ("SL", "SL-M")
            self._change(
                order_id, status="TRIGGER PENDING" if waiting else "OPEN", exchange_order_id=str(1100000000000000 + int(order_id) % 10**9)
            )
            self._match(order_id)
            if spec["validity"] == "IOC" and self.orders[order_id][-1]["status"] == "OPEN":
                left = self.orders[order_id][-1]["pending_quantity"]
                self._change(
                    order_id, status="CANCELLED", pending_quantity=0, cancelled_quantity=left, status_message="IOC order cancelled."
                )
            return order_id

    def _validated(self, variety: str, form: dict[str, str]) -> dict[str, Any]:
        if variety not in VARIETIES:
            raise input_error(f"Invalid variety `{variety}`.")
        spec: dict[str, Any] = {}
        for name in ("exchange", "tradingsymbol", "transaction_type", "quantity", "product", "order_type"):
            if not form.get(name):
                raise input_error(f"Missing `{name}`.")
            spec[name] = form[name]
        if spec["transaction_type"] not in ("BUY", "SELL"):
            raise input_error("Invalid `transaction_type`.")
        if spec["product"] not in PRODUCTS:
            raise input_error("Invalid `product`.")
        if spec["order_type"] not in ORDER_TYPES:
            raise input_error("Invalid `order_type`.")
        spec["validity"] = form.get("validity") or "DAY"
        if spec["validity"] not in VALIDITIES:
            raise input_error("Invalid `validity`.")
        try:
            spec["quantity"] = int(spec["quantity"])
            spec["price"] = Decimal(form.get("price") or "0")
            spec["trigger_price"] = Decimal(form.get("trigger_price") or "0")
        except (ValueError, ArithmeticError):
            raise input_error("Invalid number.") from None
        if spec["quantity"] <= 0:
            raise input_error("Invalid `quantity`.")
        inst = self.instrument(spec["exchange"], spec["tradingsymbol"])
        if spec["quantity"] % inst.lot_size:
            raise input_error(f"Quantity should be a multiple of the lot size {inst.lot_size}.")
        if spec["order_type"] in ("LIMIT", "SL") and spec["price"] <= 0:
            raise input_error("Invalid `price`.")
        if spec["order_type"] in ("SL", "SL-M") and spec["trigger_price"] <= 0:
            raise input_error("Invalid `trigger_price`.")
        for name in ("price", "trigger_price"):
            if spec[name] and spec[name] % inst.tick_size:
                raise input_error(f"Tick size for this script is {inst.tick_size}. Kindly enter the {name} in the multiple of tick size.")
        if spec["validity"] == "TTL":
            ttl = form.get("validity_ttl") or ""
            if not ttl.isdigit() or not 1 <= int(ttl) <= 1440:
                raise input_error("Invalid `validity_ttl`.")
            spec["validity_ttl"] = int(ttl)
        if variety == "co":
            self._cover_check(spec, inst)
        spec["iceberg_legs"] = 0
        if variety == "iceberg":
            legs, leg_qty = form.get("iceberg_legs") or "", form.get("iceberg_quantity") or ""
            if not legs.isdigit() or not 2 <= int(legs) <= 10 or not leg_qty.isdigit() or int(leg_qty) <= 0:
                raise input_error("Invalid `iceberg_legs` or `iceberg_quantity`.")
            spec["iceberg_legs"] = int(legs)
        tag = form.get("tag") or ""
        if len(tag) > 20 or (tag and not tag.isalnum()):
            raise input_error("Invalid `tag`: at most 20 alphanumeric characters.")
        spec["tag"] = tag
        return spec

    @staticmethod
    def _cover_check(spec: dict[str, Any], inst: Instrument) -> None:
        """Kite's cover order: a MARKET or LIMIT intraday entry whose
        trigger_price (its stop-loss leg's) stands on the losing side of the
        entry (the limit price, else the last price)."""
        if spec["order_type"] not in ("MARKET", "LIMIT"):
            raise input_error("Cover orders can only be MARKET or LIMIT orders.")
        if spec["product"] != "MIS":
            raise input_error("Cover orders are only allowed with the MIS product.")
        if spec["validity"] != "DAY":
            raise input_error("Cover orders can only be DAY orders.")
        if spec["trigger_price"] <= 0:
            raise input_error("Trigger price is required for cover orders.")
        entry = spec["price"] if spec["order_type"] == "LIMIT" else inst.last_price
        buy = spec["transaction_type"] == "BUY"
        if (spec["trigger_price"] >= entry) if buy else (spec["trigger_price"] <= entry):
            raise input_error(
                f"Trigger price for {'buy' if buy else 'sell'} cover orders must be {'below' if buy else 'above'} {_num(entry)}."
            )

    def _cover_leg(self, entry: dict[str, Any]) -> None:
        """The stop-loss leg Kite places once a cover order's entry completes:
        an SL-M order of the other side, its parent the entry."""
        self._next_order += 1
        order_id = str(self._next_order)
        leg = {
            **entry,
            "order_id": order_id,
            "parent_order_id": entry["order_id"],
            "exchange_order_id": str(1100000000000000 + int(order_id) % 10**9),
            "status": "TRIGGER PENDING",
            "order_timestamp": now_ist(),
            "order_type": "SL-M",
            "transaction_type": "SELL" if entry["transaction_type"] == "BUY" else "BUY",
            "price": 0,
            "average_price": 0,
            "filled_quantity": 0,
            "pending_quantity": entry["filled_quantity"],
            "quantity": entry["filled_quantity"],
            "tag": None,
            "tags": [],
            "guid": secrets.token_hex(8),
        }
        self.orders[order_id] = [leg]
        self.order_user[order_id] = self.order_user[entry["order_id"]]
        self.on_order(self.order_user[order_id], dict(leg))

    def modify(self, user_id: str, variety: str, order_id: str, form: dict[str, str]) -> str:
        with self.lock:
            last = self.order(user_id, order_id)[-1]
            if last["status"] in FINAL:
                raise KiteError(400, "InputException", f"Order cannot be modified as it is being processed or {last['status'].lower()}.")
            if last["variety"] != variety:
                raise input_error("Invalid `variety` for this order.")
            inst = self.instruments[last["instrument_token"]]
            changes: dict[str, Any] = {"modified": True}
            try:
                if form.get("quantity"):
                    qty = int(form["quantity"])
                    if qty <= last["filled_quantity"] or qty % inst.lot_size:
                        raise input_error("Invalid `quantity`.")
                    changes.update(quantity=qty, pending_quantity=qty - last["filled_quantity"])
                for name in ("price", "trigger_price"):
                    if form.get(name):
                        value = Decimal(form[name])
                        if value <= 0 or value % inst.tick_size:
                            raise input_error(f"Invalid `{name}`.")
                        changes[name] = _num(value)
            except (ValueError, ArithmeticError):
                raise input_error("Invalid number.") from None
            if form.get("order_type"):
                if form["order_type"] not in ORDER_TYPES:
                    raise input_error("Invalid `order_type`.")
                changes["order_type"] = form["order_type"]
            self._change(order_id, status="MODIFY VALIDATION PENDING", notify=False)
            self._change(order_id, status="MODIFY PENDING", notify=False)
            self._change(order_id, status=last["status"], **changes)
            self._match(order_id)
            return order_id

    def cancel(self, user_id: str, variety: str, order_id: str, *, parent_order_id: str = "") -> str:
        with self.lock:
            last = self.order(user_id, order_id)[-1]
            if last["status"] in FINAL:
                raise KiteError(400, "InputException", f"Order cannot be cancelled as it is being processed or {last['status'].lower()}.")
            if last["variety"] == "co" and last["parent_order_id"]:
                # Exiting a cover order (kiteconnect's exit_order names the
                # leg's parent): its stop-loss leg goes to the market.
                if parent_order_id != last["parent_order_id"]:
                    raise input_error("Invalid `parent_order_id`.")
                self._change(order_id, status="OPEN", order_type="MARKET", notify=False)
                self._match(order_id)
                return order_id
            self._change(order_id, status="CANCEL PENDING", notify=False)
            self._change(order_id, status="CANCELLED", pending_quantity=0, cancelled_quantity=last["pending_quantity"], status_message=None)
            return order_id

    def _available(self, account: Account) -> Decimal:
        return account.cash - self._debits(account.user_id)

    def _debits(self, user_id: str) -> Decimal:
        spent = Decimal(0)
        for trade in self.trades:
            if self.order_user.get(trade["order_id"]) == user_id:
                value = Decimal(str(trade["average_price"])) * trade["quantity"]
                spent += value if trade["transaction_type"] == "BUY" else -value
        return spent

    def _change(self, order_id: str, *, notify: bool = True, **changes: Any) -> dict[str, Any]:
        history = self.orders[order_id]
        state = {**history[-1], **changes, "exchange_update_timestamp": now_ist()}
        if state.get("exchange_order_id"):
            state["exchange_timestamp"] = state["exchange_update_timestamp"]
        history.append(state)
        if notify:
            self.on_order(self.order_user[order_id], dict(state))
        return state

    def _match_all(self) -> None:
        for order_id, history in list(self.orders.items()):
            if history[-1]["status"] in ("OPEN", "TRIGGER PENDING"):
                self._match(order_id)

    def _match(self, order_id: str) -> None:
        last = self.orders[order_id][-1]
        inst = self.instruments[last["instrument_token"]]
        price = inst.last_price
        buy = last["transaction_type"] == "BUY"
        if last["status"] == "TRIGGER PENDING":
            trigger = Decimal(str(last["trigger_price"]))
            if not (price >= trigger if buy else price <= trigger):
                return
            last = self._change(order_id, status="OPEN", notify=False)
        if last["status"] != "OPEN" or price <= 0:
            return
        if last["order_type"] in ("LIMIT", "SL"):
            limit = Decimal(str(last["price"]))
            if not (price <= limit if buy else price >= limit):
                return
        qty = last["pending_quantity"]
        self._next_trade += 1
        now = now_ist()
        self.trades.append(
            {
                "trade_id": str(self._next_trade),
                "order_id": order_id,
                "exchange": last["exchange"],
                "tradingsymbol": last["tradingsymbol"],
                "instrument_token": last["instrument_token"],
                "product": last["product"],
                "average_price": _num(price),
                "quantity": qty,
                "exchange_order_id": last["exchange_order_id"],
                "transaction_type": last["transaction_type"],
                "fill_timestamp": now,
                "order_timestamp": last["order_timestamp"],
                "exchange_timestamp": now,
            }
        )
        filled = last["filled_quantity"] + qty
        done = self._change(order_id, status="COMPLETE", filled_quantity=filled, pending_quantity=0, average_price=_num(price))
        if done["variety"] == "co" and not done["parent_order_id"]:
            self._cover_leg(done)

    # --- reads ------------------------------------------------------------------------

    def orders_of(self, user_id: str) -> list[dict[str, Any]]:
        return [h[-1] for oid, h in self.orders.items() if self.order_user[oid] == user_id]

    def trades_of(self, user_id: str, order_id: str | None = None) -> list[dict[str, Any]]:
        return [t for t in self.trades if self.order_user.get(t["order_id"]) == user_id and (order_id is None or t["order_id"] == order_id)]

    def positions_of(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        for trade in self.trades_of(user_id):
            key = (trade["exchange"], trade["tradingsymbol"], trade["product"])
            row = rows.setdefault(key, {"buy_q": 0, "buy_v": Decimal(0), "sell_q": 0, "sell_v": Decimal(0), "trade": trade})
            value = Decimal(str(trade["average_price"])) * trade["quantity"]
            if trade["transaction_type"] == "BUY":
                row["buy_q"] += trade["quantity"]
                row["buy_v"] += value
            else:
                row["sell_q"] += trade["quantity"]
                row["sell_v"] += value
        out = []
        for (exchange, symbol, product), row in rows.items():
            inst = self.instrument(exchange, symbol)
            qty = row["buy_q"] - row["sell_q"]
            buy_price = row["buy_v"] / row["buy_q"] if row["buy_q"] else Decimal(0)
            sell_price = row["sell_v"] / row["sell_q"] if row["sell_q"] else Decimal(0)
            avg = buy_price if qty > 0 else sell_price if qty < 0 else Decimal(0)
            pnl = (row["sell_v"] - row["buy_v"]) + qty * inst.last_price
            unrealised = qty * (inst.last_price - avg) if qty else Decimal(0)
            out.append(
                {
                    "tradingsymbol": symbol,
                    "exchange": exchange,
                    "instrument_token": inst.token,
                    "product": product,
                    "quantity": qty,
                    "overnight_quantity": 0,
                    "multiplier": 1,
                    "average_price": float(round(avg, 4)),
                    "close_price": 0,
                    "last_price": _num(inst.last_price),
                    "value": float(row["sell_v"] - row["buy_v"]),
                    "pnl": float(round(pnl, 4)),
                    "m2m": float(round(pnl, 4)),
                    "unrealised": float(round(unrealised, 4)),
                    "realised": float(round(pnl - unrealised, 4)),
                    "buy_quantity": row["buy_q"],
                    "buy_price": float(round(buy_price, 4)),
                    "buy_value": float(row["buy_v"]),
                    "sell_quantity": row["sell_q"],
                    "sell_price": float(round(sell_price, 4)),
                    "sell_value": float(row["sell_v"]),
                    "day_buy_quantity": row["buy_q"],
                    "day_sell_quantity": row["sell_q"],
                }
            )
        return {"net": out, "day": [dict(r) for r in out]}

    def margins_of(self, user_id: str) -> dict[str, Any]:
        account = self.accounts[user_id]
        debits = self._debits(user_id)

        def segment(cash: Decimal, used: Decimal) -> dict[str, Any]:
            return {
                "enabled": True,
                "net": float(cash - used),
                "available": {
                    "adhoc_margin": 0,
                    "cash": float(cash),
                    "opening_balance": float(cash),
                    "live_balance": float(cash - used),
                    "collateral": 0,
                    "intraday_payin": 0,
                },
                "utilised": {
                    "debits": float(used),
                    "exposure": 0,
                    "m2m_realised": 0,
                    "m2m_unrealised": 0,
                    "option_premium": 0,
                    "payout": 0,
                    "span": 0,
                    "holding_sales": 0,
                    "turnover": 0,
                    "liquid_collateral": 0,
                    "stock_collateral": 0,
                    "delivery": 0,
                },
            }

        return {"equity": segment(account.cash, max(debits, Decimal(0))), "commodity": segment(account.commodity_cash, Decimal(0))}

    def instruments_csv(self, exchange: str | None = None) -> str:
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for inst in self.instruments.values():
            if exchange is None or inst.exchange == exchange:
                writer.writerow(inst.csv_row())
        return out.getvalue()

    def historical(self, token: int, interval: str, start: date | None, end: date | None) -> list[list[Any]]:
        return list(self.candles.get((token, interval), []))
