"""The fake KIS server's state: app keys and their tokens, accounts (cash,
holdings), prices and the day's orders, with a tiny matching rule (market
orders fill at once at the current price; limit orders fill when the price
crosses them). One lock guards everything; events for the WebSocket side
(trades, order notices) are handed to a listener after the lock is released.

Plain Python (no Django): the fake runs in tests, in the demo process and
under `manage.py run_fake_kis`."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from brokers.kis import protocol
from brokers.kis.fake.records import Event, digits, notice_event, now_kst, plain, trade_record

MAX_ACCOUNTS = 1000
MAX_ORDERS = 100_000  # per server run; bounded memory
MAX_CODES = 5000


class Rejected(Exception):
    """A business error: HTTP 200, rt_cd "1" with this msg_cd and msg1."""

    def __init__(self, msg_cd: str, msg1: str) -> None:
        super().__init__(msg1)
        self.msg_cd = msg_cd
        self.msg1 = msg1


@dataclass
class App:
    app_key: str
    app_secret: str
    environment: str
    token: str = ""
    token_expires_at: datetime | None = None
    last_issue: float = 0.0  # monotonic time of the last token issue
    tokens: dict[str, datetime] = field(default_factory=dict)  # every token issued and not revoked -> its expiry
    approval_keys: list[str] = field(default_factory=list)
    approval_key: str = ""


@dataclass
class Holding:
    code: str
    qty: int
    avg_price: Decimal
    name: str


@dataclass
class Account:
    app_key: str
    cano: str
    product_code: str
    hts_id: str
    cash: Decimal
    environment: str
    name: str = "FAKE KIS"
    holdings: dict[str, Holding] = field(default_factory=dict)


@dataclass
class Quote:
    code: str
    price: Decimal
    name: str
    open: Decimal
    high: Decimal
    low: Decimal
    prev_close: Decimal
    volume: int = 0
    amount: Decimal = Decimal(0)
    last_qty: int = 0
    minutes: dict[str, list[Any]] = field(default_factory=dict)  # "HHMM" -> [o, h, l, c, vol]


@dataclass
class Order:
    odno: str
    orgno: str
    cano: str
    product_code: str
    code: str
    side: str  # protocol.SIDE_BUY / SIDE_SELL
    ord_dvsn: str
    qty: int
    price: Decimal  # 0 for market
    ord_dt: str
    ord_tmd: str
    orgn_odno: str = ""
    filled_qty: int = 0
    filled_amount: Decimal = Decimal(0)
    canceled_qty: int = 0
    rejected_qty: int = 0
    is_cancel: bool = False  # a cancel order's row (KIS lists revise/cancel orders as their own rows)
    reserved_cash: Decimal = Decimal(0)  # a buy's cash held until filled or canceled

    @property
    def remaining(self) -> int:
        if self.is_cancel:
            return 0
        return self.qty - self.filled_qty - self.canceled_qty - self.rejected_qty

    @property
    def avg_price(self) -> Decimal:
        return (self.filled_amount / self.filled_qty).quantize(Decimal(1)) if self.filled_qty else Decimal(0)


def _int(value: Any, what: str) -> int:
    text = str(value)
    if not digits(text) or len(text) > 10:
        raise Rejected("APBK0918", f"{what} 입력값을 확인하세요.")
    return int(text)


class Exchange:
    """All of the fake's state, guarded by one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.apps: dict[str, App] = {}
        self.accounts: dict[tuple[str, str], Account] = {}
        self.quotes: dict[str, Quote] = {}
        self.orders: dict[str, Order] = {}
        self.approval_keys: dict[str, str] = {}  # approval key -> app key
        self.token_ttl = 86400  # seconds; expires_in
        self.token_interval = protocol.TOKEN_ISSUE_INTERVAL
        self.reuse_token = True  # asking again within validity returns the same token (as reported)
        self.partial_fill_qty = 0  # >0: a crossing limit order fills at most this many shares per price move
        self.listener: Callable[[list[Event]], None] | None = None
        # Order numbers grow through the day, across restarts of the fake too (KIS never
        # reuses one within a day): seeded by the time of day, in milliseconds.
        stamp = now_kst()
        self._order_seq = ((stamp.hour * 60 + stamp.minute) * 60 + stamp.second) * 1000 + stamp.microsecond // 1000
        self._clock: Callable[[], float] = time.monotonic

    # --- setup ---------------------------------------------------------------------------

    def add_account(
        self,
        *,
        app_key: str,
        app_secret: str,
        cano: str,
        product_code: str = "01",
        hts_id: str = "",
        cash_krw: Decimal = Decimal("10000000"),
        environment: str = "paper",
        name: str = "FAKE KIS",
    ) -> None:
        if environment not in ("paper", "live"):
            raise ValueError("environment is paper or live")
        if not (len(cano) == 8 and digits(cano) and len(product_code) == 2 and digits(product_code)):
            raise ValueError("cano is 8 digits, product_code 2")
        with self.lock:
            app = self.apps.get(app_key)
            if app is None:
                if len(self.apps) >= MAX_ACCOUNTS:
                    raise ValueError("too many app keys")
                app = self.apps[app_key] = App(app_key, app_secret, environment)
            elif app.app_secret != app_secret or app.environment != environment:
                raise ValueError("this app key exists with another secret or environment")
            if len(self.accounts) >= MAX_ACCOUNTS:
                raise ValueError("too many accounts")
            self.accounts[(cano, product_code)] = Account(app_key, cano, product_code, hts_id, Decimal(cash_krw), environment, name)

    def set_price(self, code: str, price: Decimal | int | str, *, name: str = "", volume: int = 0) -> None:
        self.set_prices(code, [price], name=name, volume=volume)

    def set_prices(self, code: str, prices: list[Decimal | int | str], *, name: str = "", volume: int = 0) -> None:
        """Trades at these prices, in order: crossing limit orders fill, and
        subscribers get one H0STCNT0 frame carrying every trade."""
        values = [Decimal(str(price)) for price in prices]
        if not (len(code) == 6 and code.isalnum()) or not values or len(values) > 100 or min(values) <= 0:
            raise ValueError("a 6-character code and 1..100 positive prices")
        events: list[Event] = []
        with self.lock:
            for price in values:
                events += self._trade(code, price, name, volume or 1)
        self._emit(events)

    def _trade(self, code: str, price: Decimal, name: str, qty: int) -> list[Event]:
        quote = self.quotes.get(code)
        if quote is None:
            if len(self.quotes) >= MAX_CODES:
                raise ValueError("too many codes")
            quote = self.quotes[code] = Quote(code, price, name or code, price, price, price, price)
        quote.price = price
        quote.name = name or quote.name
        quote.high = max(quote.high, price)
        quote.low = min(quote.low, price)
        quote.last_qty = qty
        quote.volume += qty
        quote.amount += price * qty
        stamp = now_kst()
        minute = stamp.strftime("%H%M")
        bar = quote.minutes.get(minute)
        if bar is None:
            if len(quote.minutes) >= 24 * 60:
                quote.minutes.pop(next(iter(quote.minutes)))
            quote.minutes[minute] = [price, price, price, price, qty]
        else:
            bar[1], bar[2], bar[3], bar[4] = max(bar[1], price), min(bar[2], price), price, bar[4] + qty
        events: list[Event] = [("trade", {"code": code, "record": trade_record(quote, stamp)})]
        for order in sorted(self.orders.values(), key=lambda o: o.odno):
            if order.code == code and not order.is_cancel and order.remaining > 0 and self._crosses(order, price):
                events += self._fill(order, price, self.partial_fill_qty or order.remaining)
        return events

    def fill(self, odno: str, qty: int = 0, price: Decimal | int | str | None = None) -> None:
        """Fill ``qty`` (default: all that remains) of an order at ``price``
        (default: its limit, or the current price), whatever the market does."""
        with self.lock:
            order = self.orders.get(odno)
            if order is None or order.remaining <= 0:
                raise ValueError(f"no open order {odno!r}")
            at = Decimal(str(price)) if price is not None else order.price or self.quotes[order.code].price
            events = self._fill(order, at, qty or order.remaining)
        self._emit(events)

    def reject(self, odno: str) -> None:
        """The exchange refuses what remains of an order (RFUS_YN 1 notice, rjct_qty)."""
        with self.lock:
            order = self.orders.get(odno)
            if order is None or order.remaining <= 0:
                raise ValueError(f"no open order {odno!r}")
            account = self.accounts[(order.cano, order.product_code)]
            qty = order.remaining
            self._release(order, account, qty)
            order.rejected_qty += qty
            events = [notice_event(order, account, self._name(order.code), ack=True, refused=True)]
        self._emit(events)

    def add_holding(self, cano: str, code: str, qty: int, avg_price: Decimal | int | str, name: str = "", product_code: str = "01") -> None:
        with self.lock:
            account = self.accounts[(cano, product_code)]
            account.holdings[code] = Holding(code, int(qty), Decimal(str(avg_price)), name or code)
            known = code in self.quotes
        if not known:
            self.set_price(code, avg_price, name=name)

    def _name(self, code: str) -> str:
        return self.quotes[code].name if code in self.quotes else code

    def _emit(self, events: list[Event]) -> None:
        if events and self.listener is not None:
            self.listener(events)

    # --- auth ----------------------------------------------------------------------------

    def issue_token(self, app_key: str, app_secret: str) -> tuple[str, datetime, int]:
        """(token, expires_at, expires_in seconds): a new token lives token_ttl
        seconds, one given again what it has left. Raises Rejected
        (EGW00103/EGW00105/EGW00133)."""
        with self.lock:
            app = self._app(app_key, app_secret)
            now = self._clock()
            if app.last_issue and now - app.last_issue < self.token_interval:
                raise Rejected(protocol.ERR_TOKEN_TOO_SOON, "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)")
            app.last_issue = now
            if self.reuse_token and app.token and app.token_expires_at and app.token_expires_at > now_kst():
                return app.token, app.token_expires_at, int((app.token_expires_at - now_kst()).total_seconds())
            app.token = "fake." + secrets.token_urlsafe(48)
            app.token_expires_at = now_kst().replace(microsecond=0) + timedelta(seconds=self.token_ttl)
            app.tokens[app.token] = app.token_expires_at
            while len(app.tokens) > 100:  # bounded: the oldest go
                app.tokens.pop(next(iter(app.tokens)))
            return app.token, app.token_expires_at, self.token_ttl

    def issue_approval_key(self, app_key: str, secret_key: str) -> str:
        with self.lock:
            app = self._app(app_key, secret_key)
            app.approval_key = str(uuid.uuid4())  # KIS approval keys are uuid-like strings
            self.approval_keys[app.approval_key] = app_key
            app.approval_keys.append(app.approval_key)
            if len(app.approval_keys) > 10:  # bounded: the oldest stop working
                self.approval_keys.pop(app.approval_keys.pop(0), None)
            return app.approval_key

    def revoke_token(self, app_key: str, app_secret: str, token: str) -> None:
        with self.lock:
            app = self._app(app_key, app_secret)
            app.tokens.pop(token, None)
            if app.token == token:
                app.token, app.token_expires_at = "", None

    def expire_tokens(self) -> None:
        """Every token expires now (the next TR call answers EGW00123)."""
        with self.lock:
            for app in self.apps.values():
                app.tokens.clear()
                app.token_expires_at = now_kst() - timedelta(seconds=1)

    def _app(self, app_key: str, app_secret: str) -> App:
        app = self.apps.get(app_key)
        if app is None:
            raise Rejected("EGW00103", "유효하지 않은 AppKey입니다.")
        if not secrets.compare_digest(app.app_secret.encode(), app_secret.encode()):
            raise Rejected("EGW00105", "유효하지 않은 AppSecret입니다.")
        return app

    def check_tr(self, app_key: str, app_secret: str, bearer: str) -> App:
        """The app of a TR call, or Rejected with the gateway's code."""
        with self.lock:
            app = self._app(app_key, app_secret)
            expires = app.tokens.get(bearer)
            if expires is None or expires <= now_kst():
                raise Rejected(protocol.ERR_TOKEN_EXPIRED, "기간이 만료된 token 입니다.")
            return app

    def app_of_approval(self, approval_key: str) -> App | None:
        with self.lock:
            app_key = self.approval_keys.get(approval_key)
            return self.apps.get(app_key) if app_key else None

    def account_for(self, app: App, cano: str, product_code: str) -> Account:
        account = self.accounts.get((cano, product_code))
        if account is None or account.app_key != app.app_key:
            raise Rejected("OPSQ2000", "ERROR : INPUT INVALID_CHECK_ACNO")
        return account

    # --- orders --------------------------------------------------------------------------

    def _next_odno(self) -> str:
        if len(self.orders) >= MAX_ORDERS:
            raise Rejected("APBK0919", "주문 가능 건수를 초과하였습니다.")
        self._order_seq += 1
        return f"{self._order_seq:010d}"

    def order_cash(self, app: App, side: str, body: dict[str, str]) -> Order:
        events: list[Event] = []
        with self.lock:
            account = self.account_for(app, str(body.get("CANO", "")), str(body.get("ACNT_PRDT_CD", "")))
            code = str(body.get("PDNO", ""))
            if not (len(code) == 6 and digits(code)):
                raise Rejected("APBK0656", "해당 종목정보가 없습니다.")
            quote = self.quotes.get(code)
            if quote is None:
                raise Rejected("APBK0656", "해당 종목정보가 없습니다.")
            ord_dvsn = str(body.get("ORD_DVSN", ""))
            if ord_dvsn not in (protocol.ORD_DVSN_LIMIT, protocol.ORD_DVSN_MARKET):
                raise Rejected("APBK1004", "주문구분 입력값을 확인하세요.")
            qty = _int(body.get("ORD_QTY", ""), "주문수량")
            if qty <= 0:
                raise Rejected("APBK0918", "주문수량 입력값을 확인하세요.")
            price = self._order_price(ord_dvsn, body.get("ORD_UNPR", ""))
            cost_price = quote.price if ord_dvsn == protocol.ORD_DVSN_MARKET else price
            if side == protocol.SIDE_BUY:
                if account.cash < cost_price * qty:
                    raise Rejected("APBK0952", "주문가능금액을 초과 했습니다")
            else:
                holding = account.holdings.get(code)
                if holding is None or self._sellable(account, code) < qty:
                    raise Rejected("APBK0400", "주문 가능한 수량을 초과하였습니다.")
            stamp = now_kst()
            order = Order(
                self._next_odno(),
                "91252",
                account.cano,
                account.product_code,
                code,
                side,
                ord_dvsn,
                qty,
                price,
                stamp.strftime("%Y%m%d"),
                stamp.strftime("%H%M%S"),
            )
            if side == protocol.SIDE_BUY:
                order.reserved_cash = cost_price * qty
                account.cash -= order.reserved_cash
            self.orders[order.odno] = order
            events.append(notice_event(order, account, self._name(order.code), ack=True))
            if ord_dvsn == protocol.ORD_DVSN_MARKET:
                events += self._fill(order, quote.price, qty)
            elif self._crosses(order, quote.price):
                events += self._fill(order, quote.price, self.partial_fill_qty or qty)
        self._emit(events)
        return order

    def _order_price(self, ord_dvsn: str, raw: Any) -> Decimal:
        text = str(raw)
        if ord_dvsn == protocol.ORD_DVSN_MARKET:
            if text not in ("0", ""):
                raise Rejected("APBK0913", "시장가 주문은 주문단가를 0으로 입력하세요.")
            return Decimal(0)
        if not digits(text) or len(text) > 12 or int(text) <= 0:
            raise Rejected("APBK0914", "주문단가 입력값을 확인하세요.")
        price = Decimal(text)
        if price % protocol.krx_tick_size(price):
            raise Rejected("APBK0506", "호가단위 오류입니다.")
        return price

    def _sellable(self, account: Account, code: str) -> int:
        holding = account.holdings.get(code)
        held = holding.qty if holding else 0
        pending = sum(
            o.remaining
            for o in self.orders.values()
            if o.cano == account.cano and o.code == code and o.side == protocol.SIDE_SELL and not o.is_cancel
        )
        return held - pending

    @staticmethod
    def _crosses(order: Order, price: Decimal) -> bool:
        if order.ord_dvsn == protocol.ORD_DVSN_MARKET:
            return True
        return price <= order.price if order.side == protocol.SIDE_BUY else price >= order.price

    def _fill(self, order: Order, price: Decimal, qty: int) -> list[Event]:
        account = self.accounts[(order.cano, order.product_code)]
        qty = min(qty, order.remaining)
        holding = account.holdings.get(order.code)
        if order.side == protocol.SIDE_SELL:  # never more than is held (add_holding may have cut it)
            qty = min(qty, holding.qty if holding else 0)
        if qty <= 0:
            return []
        amount = price * qty
        if order.side == protocol.SIDE_BUY:
            # the reservation's share of this fill, released before the cost is taken
            reserved_part = order.reserved_cash * qty / order.remaining
            order.reserved_cash -= reserved_part
            account.cash += reserved_part - amount
            if holding is None:
                account.holdings[order.code] = Holding(order.code, qty, price, self._name(order.code))
            else:
                total = holding.qty + qty
                holding.avg_price = ((holding.avg_price * holding.qty + amount) / total).quantize(Decimal("0.0001"))
                holding.qty = total
        else:
            assert holding is not None  # noqa: S101 - checked above
            account.cash += amount
            holding.qty -= qty
            if holding.qty <= 0:
                del account.holdings[order.code]
        order.filled_qty += qty
        order.filled_amount += amount
        return [notice_event(order, account, self._name(order.code), ack=False, fill_qty=qty, fill_price=price)]

    def revise_cancel(self, app: App, body: dict[str, str]) -> Order:
        events: list[Event] = []
        with self.lock:
            account = self.account_for(app, str(body.get("CANO", "")), str(body.get("ACNT_PRDT_CD", "")))
            original = self.orders.get(str(body.get("ORGN_ODNO", "")))
            if original is None or original.cano != account.cano or original.is_cancel:
                raise Rejected("APBK0557", "원주문번호가 존재하지 않습니다.")
            kind = str(body.get("RVSE_CNCL_DVSN_CD", ""))
            if kind not in (protocol.RVSE_REVISE, protocol.RVSE_CANCEL):
                raise Rejected("APBK1005", "정정취소구분코드 입력값을 확인하세요.")
            if original.remaining <= 0:
                raise Rejected("APBK0344", "정정/취소할 수량이 없습니다.")
            if str(body.get("QTY_ALL_ORD_YN", "")) == "Y":
                qty = original.remaining
            else:
                qty = _int(body.get("ORD_QTY", ""), "주문수량")
                if qty <= 0 or qty > original.remaining:
                    raise Rejected("APBK0344", "정정/취소 가능수량을 초과하였습니다.")
            if kind == protocol.RVSE_CANCEL:
                new = self._child(original, original.ord_dvsn, qty, original.price, is_cancel=True)
                self._release(original, account, qty)
                original.canceled_qty += qty
                self.orders[new.odno] = new
                events.append(notice_event(new, account, self._name(new.code), ack=True, rctf=protocol.RCTF_CANCEL))
            else:
                ord_dvsn = str(body.get("ORD_DVSN", original.ord_dvsn))
                if ord_dvsn not in (protocol.ORD_DVSN_LIMIT, protocol.ORD_DVSN_MARKET):
                    raise Rejected("APBK1004", "주문구분 입력값을 확인하세요.")
                price = self._order_price(ord_dvsn, body.get("ORD_UNPR", ""))
                quote = self.quotes[original.code]
                cost = (quote.price if ord_dvsn == protocol.ORD_DVSN_MARKET else price) * qty
                if original.side == protocol.SIDE_BUY:
                    released = original.reserved_cash * qty / original.remaining
                    if account.cash + released < cost:
                        raise Rejected("APBK0952", "주문가능금액을 초과 했습니다")
                self._release(original, account, qty)
                original.canceled_qty += qty
                new = self._child(original, ord_dvsn, qty, price, is_cancel=False)
                if new.side == protocol.SIDE_BUY:
                    new.reserved_cash = cost
                    account.cash -= cost
                self.orders[new.odno] = new
                events.append(notice_event(new, account, self._name(new.code), ack=True, rctf=protocol.RCTF_REVISE))
                if self._crosses(new, quote.price):
                    events += self._fill(new, quote.price, qty if ord_dvsn == protocol.ORD_DVSN_MARKET else self.partial_fill_qty or qty)
        self._emit(events)
        return new

    def _child(self, original: Order, ord_dvsn: str, qty: int, price: Decimal, *, is_cancel: bool) -> Order:
        """A revise or cancel order: its own number, pointing at the original (KIS lists both)."""
        stamp = now_kst()
        return Order(
            self._next_odno(),
            original.orgno,
            original.cano,
            original.product_code,
            original.code,
            original.side,
            ord_dvsn,
            qty,
            price,
            stamp.strftime("%Y%m%d"),
            stamp.strftime("%H%M%S"),
            orgn_odno=original.odno,
            is_cancel=is_cancel,
        )

    @staticmethod
    def _release(order: Order, account: Account, qty: int) -> None:
        if order.side == protocol.SIDE_BUY and order.remaining:
            part = order.reserved_cash * qty / order.remaining
            order.reserved_cash -= part
            account.cash += part

    # --- snapshots for the control API -------------------------------------------------------

    def orders_snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "odno": o.odno,
                    "orgn_odno": o.orgn_odno,
                    "cano": o.cano,
                    "code": o.code,
                    "side": o.side,
                    "ord_dvsn": o.ord_dvsn,
                    "qty": o.qty,
                    "price": plain(o.price),
                    "filled_qty": o.filled_qty,
                    "filled_amount": plain(o.filled_amount),
                    "canceled_qty": o.canceled_qty,
                    "remaining": o.remaining,
                    "is_cancel": o.is_cancel,
                }
                for o in self.orders.values()
            ]
