"""KiteBroker: the Broker protocol over Kite Connect v3 (INR).

Identity. Kite's ``order_id`` is our broker order id; Kite keeps our client
order id in the order's ``tag`` (at most 20 letters and digits), so orders are
found by it. Fills are Kite's trades (each with its ``trade_id``).

Orders. ``stop`` is Kite's SL-M, ``stop_limit`` its SL; ``day``/``ioc`` its
DAY/IOC, and ``validity_ttl`` (minutes) makes a TTL order. ``product``
(CNC, NRML, MIS, MTF; default CNC on NSE/BSE, NRML elsewhere) and ``variety``
(regular, amo, co, iceberg with ``iceberg_legs``/``iceberg_quantity``) come
from the order's broker fields. A cover order (co) is a MIS market or limit
entry whose ``stop_price`` is Kite's ``trigger_price``, its stop-loss leg's. A placed order's state is read once at once,
so an order Kite's risk checks rejected is answered ``rejected``.

Statuses (``protocol.STATUS_MAP``): COMPLETE filled, CANCELLED canceled,
REJECTED rejected, OPEN and every in-flight state (PUT ORDER REQ RECEIVED,
VALIDATION PENDING, OPEN PENDING, TRIGGER PENDING, MODIFY ... PENDING) new
(partially_filled once something filled), CANCEL PENDING pending_cancel.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from kiteconnect import KiteConnect

from brokers.base import (
    FINAL_STATUSES,
    Balance,
    BrokerPosition,
    BrokerRejected,
    BrokerUnavailable,
    Capabilities,
    Fill,
    Funds,
    Holding,
    OrderAck,
    OrderRequest,
    OrderStatus,
)
from brokers.kite import protocol
from brokers.kite.client import IST, KiteClient, kite_config_for
from brokers.models import BrokerAccount
from marketdata.types import Bar

logger = logging.getLogger(__name__)

CURRENCY = "INR"
INTERVALS = ("minute", "3minute", "5minute", "10minute", "15minute", "30minute", "60minute", "day")
# Kite's longest range per historical request, in days, by interval.
INTERVAL_MAX_DAYS = {
    "minute": 60,
    "3minute": 100,
    "5minute": 100,
    "10minute": 100,
    "15minute": 200,
    "30minute": 200,
    "60minute": 400,
    "day": 2000,
}

CAPABILITIES = Capabilities(
    supports_modify=True,
    supports_client_order_id=True,
    supports_reduce_only=False,
    hedging=False,
    order_types=frozenset({"market", "limit", "stop", "stop_limit"}),
    times_in_force=frozenset({"day", "ioc"}),
    extra_order_fields=protocol.EXTRA_FIELDS,
    cumulative_fills=False,
    client_order_id_pattern=protocol.TAG_PATTERN,
    order_dialect="kite",
)


def _dec(value: Any, default: Decimal = Decimal(0)) -> Decimal:
    if value is None or value == "":
        return default
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return default


def _int(value: Any) -> int:
    try:
        return int(Decimal(str(value or 0)))
    except (InvalidOperation, ValueError):
        return 0


def _time(value: Any) -> datetime | None:
    """Kite's times are India's ("YYYY-MM-DD HH:MM:SS", or parsed naive by the client)."""
    if isinstance(value, datetime):
        at = value
    elif isinstance(value, str) and value:
        try:
            at = datetime.strptime(value[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=IST)
        except ValueError:
            return None
    else:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=IST)).astimezone(UTC)


def _price(value: Any) -> Decimal | None:
    price = _dec(value)
    return price if price > 0 else None


def order_view(row: dict[str, Any]) -> OrderStatus:
    """One Kite order (its latest state) as the OMS sees it."""
    filled = _int(row.get("filled_quantity"))
    qty = _int(row.get("quantity"))
    kite_type = str(row.get("order_type") or "").upper()
    tag = str(row.get("tag") or "") or None
    updated = _time(row.get("exchange_update_timestamp")) or _time(row.get("exchange_timestamp")) or _time(row.get("order_timestamp"))
    return OrderStatus(
        broker_order_id=str(row.get("order_id") or ""),
        client_order_id=tag,
        symbol=protocol.kite_symbol(str(row.get("exchange") or ""), str(row.get("tradingsymbol") or "")),
        side="sell" if str(row.get("transaction_type") or "").upper() == "SELL" else "buy",
        order_type=protocol.ORDER_TYPE_FROM_KITE.get(kite_type, "limit"),
        qty=Decimal(qty),
        status=protocol.oms_status(str(row.get("status") or ""), filled),
        filled_qty=Decimal(filled),
        avg_fill_price=_price(row.get("average_price")) if filled else None,
        price=_price(row.get("price")) if kite_type in ("LIMIT", "SL") else None,
        stop_price=_price(row.get("trigger_price")) if kite_type in ("SL", "SL-M") or row.get("variety") == protocol.COVER else None,
        time_in_force="ioc" if str(row.get("validity") or "").upper() == "IOC" else "day",
        created_at=_time(row.get("order_timestamp")),
        updated_at=updated,
        message=str(row.get("status_message") or "")[:300],
        raw={k: _plain(row.get(k)) for k in KEPT if k in row},
    )


# What of an order an order's events keep.
KEPT = ("order_id", "exchange_order_id", "status", "status_message", "variety", "product", "validity", "tag", "order_timestamp")


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def fill_of(row: dict[str, Any], client_order_id: str | None = None) -> Fill:
    return Fill(
        broker_trade_id=str(row.get("trade_id") or ""),
        broker_order_id=str(row.get("order_id") or ""),
        client_order_id=client_order_id,
        symbol=protocol.kite_symbol(str(row.get("exchange") or ""), str(row.get("tradingsymbol") or "")),
        side="sell" if str(row.get("transaction_type") or "").upper() == "SELL" else "buy",
        qty=_dec(row.get("quantity")),
        price=_dec(row.get("average_price")),
        executed_at=_time(row.get("fill_timestamp")) or _time(row.get("exchange_timestamp")),
        raw={k: _plain(row.get(k)) for k in ("trade_id", "order_id", "exchange_order_id", "product", "fill_timestamp") if k in row},
    )


class KiteBroker:
    """One Kite account as a Broker."""

    capabilities = CAPABILITIES

    def __init__(self, account: BrokerAccount, *, client: KiteClient | None = None) -> None:
        self.account_id = account.pk
        self.client = client or KiteClient(kite_config_for(account))

    # --- orders ------------------------------------------------------------------------------

    def order_params(self, request: OrderRequest) -> tuple[str, dict[str, Any]]:
        """(variety, form) of a new order; ``BrokerRejected`` for what Kite cannot take."""
        try:
            exchange, tradingsymbol = protocol.split_symbol(request.symbol)
        except ValueError as exc:
            raise BrokerRejected(str(exc)) from None
        extra = dict(request.extra or {})
        unknown = set(extra) - protocol.EXTRA_FIELDS
        if unknown:
            raise BrokerRejected(f"Kite takes no {', '.join(sorted(unknown))}.")
        if request.order_type not in protocol.ORDER_TYPE_TO_KITE:
            raise BrokerRejected(f"Kite takes no {request.order_type} orders.")
        if request.time_in_force not in protocol.TIF_TO_KITE:
            raise BrokerRejected(f"Kite takes day and ioc orders, not {request.time_in_force}.")
        problem = protocol.tag_problem(request.client_order_id)
        if problem:
            raise BrokerRejected(problem)
        qty = Decimal(request.qty)
        if qty <= 0 or qty != qty.to_integral_value():
            raise BrokerRejected(f"Kite takes whole quantities; {qty} is not one.")
        variety = str(extra.get("variety") or "regular")
        if variety not in protocol.VARIETIES:
            raise BrokerRejected(f"Kite's variety is one of {', '.join(protocol.VARIETIES)}.")
        cover = variety == protocol.COVER
        product = str(extra.get("product") or (protocol.COVER_PRODUCT if cover else protocol.default_product(exchange)))
        if product not in protocol.PRODUCTS:
            raise BrokerRejected(f"Kite's product is one of {', '.join(protocol.PRODUCTS)}.")
        if cover:
            problem = protocol.cover_problem(request.side, request.order_type, product, request.price, request.stop_price)
            if problem:
                raise BrokerRejected(problem)
        form: dict[str, Any] = {
            "exchange": exchange,
            "tradingsymbol": tradingsymbol,
            "transaction_type": "SELL" if request.side == "sell" else "BUY",
            "quantity": int(qty),
            "product": product,
            "order_type": protocol.ORDER_TYPE_TO_KITE[request.order_type],
            "validity": protocol.TIF_TO_KITE[request.time_in_force],
            "tag": request.client_order_id,
        }
        if request.order_type in ("limit", "stop_limit"):
            if request.price is None:
                raise BrokerRejected("A limit order needs a price.")
            form["price"] = str(request.price)
        if request.order_type in ("stop", "stop_limit") or cover:
            if request.stop_price is None:
                raise BrokerRejected("A stop order needs a stop price.")
            # A cover order's trigger_price is its stop-loss leg's.
            form["trigger_price"] = str(request.stop_price)
        if extra.get("validity_ttl") not in (None, ""):
            form["validity"] = "TTL"
            form["validity_ttl"] = int(extra["validity_ttl"])
        if variety == "iceberg":
            form["iceberg_legs"] = int(extra.get("iceberg_legs") or 0)
            form["iceberg_quantity"] = int(extra.get("iceberg_quantity") or 0)
        return variety, form

    def place_order(self, request: OrderRequest) -> OrderAck:
        variety, form = self.order_params(request)

        def place(kite: KiteConnect) -> str:
            # kiteconnect 3.9.0's place_order() predates iceberg and TTL
            # parameters: its own request path sends the form as documented.
            data = kite._post("order.place", url_args={"variety": variety}, params=form)
            return str(data["order_id"])

        order_id = self.client.call(place, bucket="orders", sends=True)
        try:
            history = self._history(order_id)
        except (BrokerUnavailable, BrokerRejected):
            history = []
        if history:
            view = order_view(history[-1])
            if view.status == "rejected":
                return OrderAck(broker_order_id=order_id, status="rejected", message=view.message or "Rejected by Kite.", raw=view.raw)
        return OrderAck(broker_order_id=order_id, status="new", message="Accepted by Kite.", raw={"order_id": order_id, "variety": variety})

    def _history(self, order_id: str) -> list[dict[str, Any]]:
        try:
            rows = self.client.call(lambda kite: kite.order_history(order_id))
        except BrokerRejected as exc:
            if exc.raw.get("error_type") == "InputException":  # Kite: "Couldn't find that order_id."
                return []
            raise
        return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []

    def _latest(self, broker_order_id: str) -> dict[str, Any]:
        if not broker_order_id.isdigit() or len(broker_order_id) > 32:
            raise BrokerRejected(f"{broker_order_id!r} is not a Kite order id.")
        history = self._history(broker_order_id)
        if not history:
            raise BrokerRejected(f"Kite has no order {broker_order_id}.")
        return history[-1]

    def cancel_order(self, *, broker_order_id: str, symbol: str) -> OrderAck:
        latest = self._latest(broker_order_id)
        view = order_view(latest)
        if view.status in FINAL_STATUSES:
            if view.status == "canceled":
                return OrderAck(broker_order_id=broker_order_id, status="canceled", filled_qty=view.filled_qty)
            raise BrokerRejected(f"The order is {view.status} at Kite; nothing left to cancel.")
        variety = str(latest.get("variety") or "regular")
        # A cover order's stop-loss leg is exited (at the market) naming its parent, the entry.
        parent = str(latest.get("parent_order_id") or "") or None
        self.client.call(lambda kite: kite.cancel_order(variety, broker_order_id, parent_order_id=parent), bucket="orders", sends=True)
        return self._ack_after(broker_order_id, "pending_cancel")

    def modify_order(
        self, *, broker_order_id: str, symbol: str, qty: Decimal | None, price: Decimal | None, stop_price: Decimal | None
    ) -> OrderAck:
        latest = self._latest(broker_order_id)
        view = order_view(latest)
        if view.status in FINAL_STATUSES:
            raise BrokerRejected(f"The order is {view.status} at Kite; it cannot be changed.")
        params: dict[str, Any] = {"order_type": str(latest.get("order_type") or "LIMIT")}
        if qty is not None:
            wanted = Decimal(qty)
            if wanted <= view.filled_qty or wanted != wanted.to_integral_value():
                raise BrokerRejected(f"The new quantity must be a whole number above the filled {view.filled_qty}.")
            params["quantity"] = int(wanted)
        if price is not None:
            params["price"] = str(price)
        if stop_price is not None:
            params["trigger_price"] = str(stop_price)
        variety = str(latest.get("variety") or "regular")
        self.client.call(lambda kite: kite.modify_order(variety, broker_order_id, **params), bucket="orders", sends=True)
        return self._ack_after(broker_order_id, "new")

    def _ack_after(self, broker_order_id: str, pending: str) -> OrderAck:
        try:
            history = self._history(broker_order_id)
        except BrokerUnavailable:
            history = []
        if not history:
            return OrderAck(broker_order_id=broker_order_id, status=pending)
        view = order_view(history[-1])
        status = view.status if view.status in FINAL_STATUSES else (pending if pending == "pending_cancel" else view.status)
        return OrderAck(
            broker_order_id=broker_order_id, status=status, filled_qty=view.filled_qty, avg_fill_price=view.avg_fill_price, raw=view.raw
        )

    def get_order(
        self, *, client_order_id: str | None = None, broker_order_id: str | None = None, symbol: str | None = None
    ) -> OrderStatus | None:
        if broker_order_id:
            if not broker_order_id.isdigit() or len(broker_order_id) > 32:
                return None
            history = self._history(broker_order_id)
            return order_view(history[-1]) if history else None
        if client_order_id:
            if protocol.tag_problem(client_order_id):
                return None
            for view in self._orders():
                if view.client_order_id == client_order_id:
                    return view
        return None

    def order_history(self, broker_order_id: str) -> list[OrderStatus]:
        """Every state the order went through at Kite, oldest first."""
        if not broker_order_id.isdigit():
            raise BrokerRejected(f"{broker_order_id!r} is not a Kite order id.")
        return [order_view(row) for row in self._history(broker_order_id)]

    def order_trades(self, broker_order_id: str, client_order_id: str | None = None) -> list[Fill]:
        """The order's trades (``GET /orders/{id}/trades``): postbacks carry no trade id."""
        if not broker_order_id.isdigit():
            raise BrokerRejected(f"{broker_order_id!r} is not a Kite order id.")
        rows = self.client.call(lambda kite: kite.order_trades(broker_order_id))
        return [fill_of(r, client_order_id) for r in rows or [] if isinstance(r, dict)]

    def _orders(self) -> list[OrderStatus]:
        rows = self.client.call(lambda kite: kite.orders())
        views = []
        for row in rows or []:
            if isinstance(row, dict):
                try:
                    views.append(order_view(row))
                except (ValueError, TypeError):
                    logger.warning("Kite account %s: an order row could not be read: %r", self.account_id, row.get("order_id"))
        return views

    def open_orders(self) -> list[OrderStatus]:
        return [v for v in self._orders() if v.status not in FINAL_STATUSES]

    def orders_since(self, since: datetime) -> list[OrderStatus]:
        """The day's orders (Kite keeps the day's only)."""
        return [v for v in self._orders() if (v.updated_at or v.created_at or since) >= since or v.status not in FINAL_STATUSES]

    def fills_since(self, since: datetime) -> list[Fill]:
        rows = self.client.call(lambda kite: kite.trades())
        fills = [fill_of(r) for r in rows or [] if isinstance(r, dict)]
        return [f for f in fills if f.executed_at is None or f.executed_at >= since]

    # --- money -------------------------------------------------------------------------------

    def position_rows(self) -> dict[str, list[dict[str, Any]]]:
        """Kite's positions as given: ``net`` and ``day``."""
        data = self.client.call(lambda kite: kite.positions())
        if not isinstance(data, dict):
            raise BrokerUnavailable("Kite answered positions without net and day.")
        return {"net": list(data.get("net") or []), "day": list(data.get("day") or [])}

    def positions(self) -> list[BrokerPosition]:
        """Net positions, one per instrument (its products summed)."""
        by_symbol: dict[str, list[dict[str, Any]]] = {}
        for row in self.position_rows()["net"]:
            symbol = protocol.kite_symbol(str(row.get("exchange") or ""), str(row.get("tradingsymbol") or ""))
            by_symbol.setdefault(symbol, []).append(row)
        out = []
        for symbol, rows in by_symbol.items():
            qty = sum((_dec(r.get("quantity")) for r in rows), Decimal(0))
            if qty == 0:
                continue
            same = [r for r in rows if (_dec(r.get("quantity")) > 0) == (qty > 0) and _dec(r.get("quantity")) != 0]
            weight = sum((abs(_dec(r.get("quantity"))) for r in same), Decimal(0))
            avg = (
                sum((abs(_dec(r.get("quantity"))) * _dec(r.get("average_price")) for r in same), Decimal(0)) / weight
                if weight
                else Decimal(0)
            )
            unrealised = sum((_dec(r.get("unrealised")) for r in rows), Decimal(0))
            out.append(BrokerPosition(symbol=symbol, qty=qty, avg_price=avg, unrealized_pnl=unrealised))
        return out

    def holdings(self) -> list[Holding]:
        """Delivery holdings with P&L; ``qty`` includes the T+1 quantity (bought,
        not yet settled), shown apart as ``t1_qty``."""
        rows = self.client.call(lambda kite: kite.holdings())
        held = []
        for row in rows or []:
            if not isinstance(row, dict):
                continue
            qty = _dec(row.get("quantity")) + _dec(row.get("t1_quantity"))
            if qty == 0:
                continue
            held.append(
                Holding(
                    symbol=protocol.kite_symbol(str(row.get("exchange") or ""), str(row.get("tradingsymbol") or "")),
                    qty=qty,
                    avg_price=_dec(row.get("average_price")),
                    last_price=_price(row.get("last_price")),
                    name=str(row.get("tradingsymbol") or ""),
                    t1_qty=_dec(row.get("t1_quantity")),
                    pnl=_dec(row.get("pnl")),
                    day_change=_dec(row.get("day_change")),
                    currency=CURRENCY,
                )
            )
        return held

    def margins(self) -> dict[str, Any]:
        data = self.client.call(lambda kite: kite.margins())
        if not isinstance(data, dict):
            raise BrokerUnavailable("Kite answered margins without segments.")
        return data

    def funds(self) -> Funds:
        """INR money from the equity and commodity margins: cash is the
        segments' ``available.cash``, what may still be committed their ``net``,
        margin in use their ``utilised.debits``."""
        data = self.margins()
        segments = {name: data[name] for name in ("equity", "commodity") if isinstance(data.get(name), dict)}
        if not segments:
            raise BrokerUnavailable("Kite answered margins without the equity or commodity segment.")
        cash = sum((_dec((s.get("available") or {}).get("cash")) for s in segments.values()), Decimal(0))
        net = sum((_dec(s.get("net")) for s in segments.values()), Decimal(0))
        used = sum((_dec((s.get("utilised") or {}).get("debits")) for s in segments.values()), Decimal(0))
        equity = max(net + max(used, Decimal(0)), net, Decimal(0))
        available = max(min(net, equity), Decimal(0))
        return Funds(
            currency=CURRENCY,
            cash=cash,
            margin_used=max(used, Decimal(0)),
            margin_available=available,
            equity=equity,
            balances=(Balance(currency=CURRENCY, cash=cash, available=available),),
            buying_power=available,
            rates={CURRENCY: Decimal(1)},
            raw={name: _segment_summary(s) for name, s in segments.items()},
        )

    # --- market data --------------------------------------------------------------------------

    def instruments(self) -> list[dict[str, Any]]:
        """Kite's instrument master (``GET /instruments``, CSV), as kiteconnect parses it."""
        rows = self.client.call(lambda kite: kite.instruments())
        return [r for r in rows or [] if isinstance(r, dict)]

    def candles(self, instrument_token: int, *, interval: str, start: datetime, end: datetime, oi: bool = True) -> list[Bar]:
        """Historical candles (Kite's ``minute`` ... ``day``) as bars, oldest
        first; long ranges go in Kite's largest chunks, paced at 3/s."""
        if interval not in INTERVALS:
            raise BrokerRejected(f"interval is one of {', '.join(INTERVALS)}.")
        if end <= start:
            return []
        step = timedelta(days=INTERVAL_MAX_DAYS[interval])
        bars: dict[int, Bar] = {}
        cursor = start
        while cursor < end:
            chunk_end = min(cursor + step, end)
            frm, to = cursor.astimezone(IST).replace(tzinfo=None), chunk_end.astimezone(IST).replace(tzinfo=None)

            def fetch(kite: KiteConnect, frm: datetime = frm, to: datetime = to) -> Any:
                return kite.historical_data(instrument_token, frm, to, interval, oi=oi)

            rows = self.client.call(fetch, bucket="historical")
            for row in rows or []:
                bar = _bar(row)
                if bar is not None:
                    bars[bar.time] = bar
            cursor = chunk_end
        return [bars[t] for t in sorted(bars)]

    def day_candles(self, instrument_token: int, *, start: date, end: date) -> list[Bar]:
        return self.candles(
            instrument_token,
            interval="day",
            start=datetime.combine(start, datetime.min.time(), tzinfo=IST),
            end=datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=IST),
        )


def _bar(row: dict[str, Any]) -> Bar | None:
    at = row.get("date")
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            return None
    if not isinstance(at, datetime):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=IST)
    close = _dec(row.get("close"))
    if close <= 0:
        return None
    return Bar(
        time=int(at.timestamp()),
        open=_dec(row.get("open")) or close,
        high=_dec(row.get("high")) or close,
        low=_dec(row.get("low")) or close,
        close=close,
        volume=_dec(row.get("volume")),
        open_interest=_dec(row.get("oi")) if "oi" in row else None,
    )


def _segment_summary(segment: dict[str, Any]) -> dict[str, Any]:
    available = segment.get("available") or {}
    utilised = segment.get("utilised") or {}
    return {
        "enabled": bool(segment.get("enabled", True)),
        "net": str(_dec(segment.get("net"))),
        "available": {
            k: str(_dec(available.get(k)))
            for k in ("cash", "opening_balance", "live_balance", "collateral", "intraday_payin", "adhoc_margin")
        },
        "utilised": {
            k: str(_dec(utilised.get(k))) for k in ("debits", "exposure", "span", "option_premium", "m2m_realised", "m2m_unrealised")
        },
    }


def kite_broker_factory(account: BrokerAccount) -> KiteBroker:
    return KiteBroker(account)
