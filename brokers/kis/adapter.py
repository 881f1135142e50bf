"""KisBroker: the Broker protocol over KIS's REST TRs (domestic stocks, KRW).

Identity. KIS order numbers (ODNO) restart every trading day, so our broker
order id is ``<ord_dt>-<ODNO>`` (``20261205-0000117057``); a bare ODNO (as a
fill notice carries it) means today's (Korea time). A revise or cancel at KIS
is an order of its own whose ``orgn_odno`` names the order it changes: the
rows of one chain are reported as ONE order under the first order's id, with
the chain's cumulative filled quantity and amount.

Fills. KIS gives no trade ids: the daily-orders query gives per-order totals
and the fill notices carry the order number. ``capabilities.cumulative_fills``
tells the OMS to book the difference between an order's cumulative filled
quantity/amount and what it booked; ``fills_since`` returns nothing.

Status of a chain (from ``cncl_yn``, ``rmn_qty``, ``rjct_qty``, ``tot_ccld_qty``):
something remaining -> ``new`` / ``partially_filled`` (``expired`` on a
later day: KIS takes day orders only); nothing remaining and the ordered
quantity filled -> ``filled``; else ``canceled`` where a cancel was taken
(part of it included), ``rejected`` where KIS refused it (``canceled`` once part
filled), ``expired`` for a day order of an earlier day.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

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
from brokers.kis import protocol
from brokers.kis.client import KisClient, kis_config_for
from brokers.models import BrokerAccount
from marketdata.types import Bar, Quote

logger = logging.getLogger(__name__)

KST = ZoneInfo(protocol.TIMEZONE)
CURRENCY = "KRW"
SCAN_REUSE = 1.0  # seconds a scan of the day's orders also answers open_orders

CAPABILITIES = Capabilities(
    supports_modify=True,
    supports_client_order_id=False,
    supports_reduce_only=False,
    hedging=False,
    order_types=frozenset({"market", "limit"}),
    times_in_force=frozenset({"day"}),
    extra_order_fields=frozenset(),
    cumulative_fills=True,
)


# --- identities ------------------------------------------------------------------------------------


def kst_today() -> date:
    return datetime.now(KST).date()


def order_ref(ord_dt: str, odno: str) -> str:
    """Our broker order id of KIS order ``odno`` of day ``ord_dt`` (YYYYMMDD)."""
    return f"{ord_dt}-{odno}"


def parse_order_ref(ref: str) -> tuple[str, str]:
    """(ord_dt, ODNO) of a broker order id; a bare ODNO is today's. Raises ValueError."""
    day, sep, odno = ref.strip().partition("-")
    if not sep:
        day, odno = kst_today().strftime(protocol.DATE_FORMAT), day
    if not (len(day) == 8 and day.isdigit() and odno.isascii() and odno.isalnum() and len(odno) <= 16):
        raise ValueError(f"{ref!r} is not a KIS order id")
    return day, odno


def _dec(value: Any, default: Decimal = Decimal(0)) -> Decimal:
    try:
        text = str(value).strip().replace(",", "")
        return Decimal(text) if text else default
    except InvalidOperation:
        return default


def _kst_time(day: str, hhmmss: str) -> datetime | None:
    try:
        return datetime.strptime(day + (hhmmss or "000000")[:6].ljust(6, "0"), "%Y%m%d%H%M%S").replace(tzinfo=KST).astimezone(UTC)
    except ValueError:
        return None


def _whole(value: Decimal, what: str) -> int:
    if value <= 0 or value != value.to_integral_value():
        raise BrokerRejected(f"KIS takes whole positive {what}s; {value} is not one.")
    return int(value)


# --- orders from the daily-orders rows -----------------------------------------------------------


@dataclass(frozen=True)
class _Chain:
    """One order and the revise/cancel orders that changed it, oldest first."""

    day: str
    rows: tuple[dict[str, Any], ...]

    @property
    def root(self) -> dict[str, Any]:
        return self.rows[0]

    @property
    def leaf(self) -> dict[str, Any]:
        """The live link: the last one still holding quantity (else the last)."""
        live = [r for r in self.rows if _remaining(r) > 0]
        return live[-1] if live else self.rows[-1]


def _is_cancel_request(row: dict[str, Any], root: dict[str, Any]) -> bool:
    return row is not root and str(row.get("cncl_yn", "")).upper() == "Y" and _dec(row.get("tot_ccld_qty")) == 0


def _remaining(row: dict[str, Any]) -> Decimal:
    if str(row.get("cncl_yn", "")).upper() == "Y":
        return Decimal(0)
    if str(row.get("rmn_qty", "")).strip():
        return max(_dec(row.get("rmn_qty")), Decimal(0))
    left = _dec(row.get("ord_qty")) - _dec(row.get("tot_ccld_qty")) - _dec(row.get("rjct_qty")) - _dec(row.get("cnc_cfrm_qty"))
    return max(left, Decimal(0))


def _chains(rows: Iterable[dict[str, Any]]) -> list[_Chain]:
    """Group rows into chains by ``orgn_odno`` (per order date)."""
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        odno = str(row.get("odno") or "").strip()
        day = str(row.get("ord_dt") or "").strip() or kst_today().strftime(protocol.DATE_FORMAT)
        if odno:
            by_key[(day, odno)] = row
    parent: dict[tuple[str, str], tuple[str, str]] = {}
    for (day, odno), row in by_key.items():
        origin = str(row.get("orgn_odno") or "").strip()
        if origin and origin != odno and (day, origin) in by_key:
            parent[(day, odno)] = (day, origin)

    def root_of(key: tuple[str, str]) -> tuple[str, str]:
        seen = {key}
        while key in parent and parent[key] not in seen:
            key = parent[key]
            seen.add(key)
        return key

    members: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for key in by_key:
        members.setdefault(root_of(key), []).append(by_key[key])
    chains = []
    for (day, odno), rows_of in members.items():
        root = by_key[(day, odno)]
        others = sorted((r for r in rows_of if r is not root), key=lambda r: (str(r.get("ord_tmd", "")), str(r.get("odno", ""))))
        chains.append(_Chain(day=day, rows=(root, *others)))
    return chains


def _chain_view(chain: _Chain, today: str) -> OrderStatus:
    root, leaf = chain.root, chain.leaf
    links = [r for r in chain.rows if not _is_cancel_request(r, root)]
    filled = sum((_dec(r.get("tot_ccld_qty")) for r in links), Decimal(0))
    amount = sum((_dec(r.get("tot_ccld_amt")) for r in links), Decimal(0))
    remaining = sum((_remaining(r) for r in links), Decimal(0))
    canceled_qty = sum((_dec(r.get("ord_qty")) for r in chain.rows if _is_cancel_request(r, root)), Decimal(0))
    ordered = _dec(root.get("ord_qty"))
    if remaining > 0:
        qty = filled + remaining
        # Day orders only: what an earlier day left unfilled ended at its close.
        status = "expired" if chain.day < today else "partially_filled" if filled > 0 else "new"
    else:
        qty = max(ordered - canceled_qty, filled) if canceled_qty < ordered else ordered
        rejected = sum((_dec(r.get("rjct_qty")) for r in links), Decimal(0))
        if ordered > 0 and filled >= ordered:
            status = "filled"
        elif canceled_qty > 0 or any(str(r.get("cncl_yn", "")).upper() == "Y" for r in chain.rows):
            # Part canceled, the rest filled: a lower quantity that filled and a
            # cancel after a partial fill look the same here. "canceled" is the
            # safe word: an order whose cancel KIS took is never shown working,
            # and one filled at its lowered quantity is final by its deals.
            status = "canceled"
        elif rejected > 0:
            status = "canceled" if filled > 0 else "rejected"
        elif chain.day < today:
            status = "expired"
        else:
            status = "canceled"  # nothing remains and nothing says why: it is not working
    if qty == 0:
        qty = ordered
    side = "sell" if str(root.get("sll_buy_dvsn_cd", "")).strip() == protocol.SIDE_SELL else "buy"
    dvsn = str(leaf.get("ord_dvsn_cd") or root.get("ord_dvsn_cd") or "").strip()
    price = _dec(leaf.get("ord_unpr"))
    market = dvsn == protocol.ORD_DVSN_MARKET or (not dvsn and price == 0)
    created = _kst_time(chain.day, str(root.get("ord_tmd") or ""))
    updated = _kst_time(chain.day, str(chain.rows[-1].get("ord_tmd") or "")) or created
    avg = _dec(leaf.get("avg_prvs")) if len(links) == 1 else (amount / filled if filled else Decimal(0))
    return OrderStatus(
        broker_order_id=order_ref(chain.day, str(root.get("odno")).strip()),
        client_order_id=None,
        symbol=protocol.kis_symbol(str(root.get("pdno") or "")),
        side=side,
        order_type="market" if market else "limit",
        qty=qty,
        status=status,
        filled_qty=filled,
        avg_fill_price=(avg or (amount / filled if filled else None)) if filled else None,
        price=None if market else price,
        time_in_force="day",
        created_at=created,
        updated_at=updated,
        message=str(leaf.get("ord_dvsn_name") or "")[:200],
        raw={"rows": [_row_summary(r) for r in chain.rows]},
        filled_amount=amount if filled else Decimal(0),
    )


# What of a daily-orders row an order's events keep (no names, no addresses).
ROW_KEPT: tuple[str, ...] = ("ord_dt", "odno", "orgn_odno", "pdno", "sll_buy_dvsn_cd", "ord_qty", "ord_unpr", "ord_tmd")
ROW_KEPT += ("tot_ccld_qty", "tot_ccld_amt", "avg_prvs", "cncl_yn", "rmn_qty", "rjct_qty")


def _row_summary(row: dict[str, Any]) -> dict[str, str]:
    return {k: str(row[k]) for k in ROW_KEPT if k in row}


def _org_no(row: dict[str, Any]) -> str:
    return str(row.get("ord_gno_brno") or row.get("krx_fwdg_ord_orgno") or row.get("ord_orgno") or "").strip()


# --- the broker ------------------------------------------------------------------------------------


class KisBroker:
    """One KIS account (paper or live) as a Broker."""

    capabilities = CAPABILITIES

    def __init__(self, account: BrokerAccount, *, client: KisClient | None = None) -> None:
        self.account_id = account.pk
        self.base_currency = account.base_currency or CURRENCY
        self.client = client or KisClient(kis_config_for(account))
        self._last_scan: tuple[date, date, float, list[OrderStatus]] | None = None

    # --- orders ----------------------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> OrderAck:
        if request.order_type not in self.capabilities.order_types:
            raise BrokerRejected(f"KIS takes market and limit orders, not {request.order_type}.")
        if request.time_in_force not in self.capabilities.times_in_force:
            raise BrokerRejected(f"KIS takes day orders only, not {request.time_in_force}.")
        if request.side not in ("buy", "sell"):
            raise BrokerRejected(f"Unknown side {request.side!r}.")
        code = self._code(request.symbol)
        qty = _whole(Decimal(request.qty), "quantity")
        price = None
        if request.order_type == "limit":
            if request.price is None:
                raise BrokerRejected("A limit order needs a price.")
            price = _whole(Decimal(request.price), "price (KRW)")
        output = self.client.order_cash(side=request.side, code=code, qty=qty, price=price)
        day = kst_today().strftime(protocol.DATE_FORMAT)
        return OrderAck(
            broker_order_id=order_ref(day, str(output["ODNO"]).strip()),
            status="new",
            message="Accepted by KIS.",
            raw={k: str(v) for k, v in output.items() if k in ("KRX_FWDG_ORD_ORGNO", "ODNO", "ORD_TMD")},
        )

    def cancel_order(self, *, broker_order_id: str, symbol: str) -> OrderAck:
        chain = self._chain(broker_order_id, symbol)
        view = _chain_view(chain, kst_today().strftime(protocol.DATE_FORMAT))
        if view.status in FINAL_STATUSES:
            if view.status == "canceled":
                return OrderAck(broker_order_id=view.broker_order_id, status="canceled", filled_qty=view.filled_qty)
            raise BrokerRejected(f"The order is {view.status} at KIS; nothing left to cancel.")
        leaf = chain.leaf
        self.client.order_cancel(
            org_no=_org_no(leaf),
            odno=str(leaf.get("odno")).strip(),
            ord_dvsn=str(leaf.get("ord_dvsn_cd") or protocol.ORD_DVSN_LIMIT).strip(),
            qty=int(_remaining(leaf)),
            all_remaining=True,
        )
        return self._ack_after_change(broker_order_id, symbol, "pending_cancel")

    def modify_order(
        self, *, broker_order_id: str, symbol: str, qty: Decimal | None, price: Decimal | None, stop_price: Decimal | None
    ) -> OrderAck:
        """KIS revises an order's price (and type) but never raises its
        quantity: a lower quantity is a partial cancel of the remainder, a new
        price a revise of all that remains; both are two calls."""
        if stop_price is not None:
            raise BrokerRejected("KIS orders have no stop price.")
        chain = self._chain(broker_order_id, symbol)
        today = kst_today().strftime(protocol.DATE_FORMAT)
        view = _chain_view(chain, today)
        if view.status in FINAL_STATUSES:
            raise BrokerRejected(f"The order is {view.status} at KIS; it cannot be changed.")
        if qty is not None:
            wanted = Decimal(qty)
            _whole(wanted, "quantity")
            if wanted > view.qty:
                raise BrokerRejected("KIS cannot raise an order's quantity; send another order for the rest.")
            cut = view.qty - wanted
            if cut >= view.qty - view.filled_qty:
                raise BrokerRejected(f"The new quantity must stay above the filled {view.filled_qty}.")
            if cut > 0:
                leaf = chain.leaf
                self.client.order_cancel(
                    org_no=_org_no(leaf),
                    odno=str(leaf.get("odno")).strip(),
                    ord_dvsn=str(leaf.get("ord_dvsn_cd") or protocol.ORD_DVSN_LIMIT).strip(),
                    qty=int(cut),
                    all_remaining=False,
                )
                if price is not None:
                    chain = self._chain(broker_order_id, symbol)
        if price is not None and (view.price is None or Decimal(price) != view.price):
            leaf = chain.leaf
            self.client.order_revise(
                org_no=_org_no(leaf),
                odno=str(leaf.get("odno")).strip(),
                ord_dvsn=protocol.ORD_DVSN_LIMIT,
                qty=int(_remaining(leaf)),
                price=_whole(Decimal(price), "price (KRW)"),
                all_remaining=True,
            )
        return self._ack_after_change(broker_order_id, symbol, "new")

    def _ack_after_change(self, broker_order_id: str, symbol: str, pending: str) -> OrderAck:
        """The order's state once KIS took a cancel or change (one query):
        its final status when it is final, else ``pending``."""
        try:
            view = self.get_order(broker_order_id=broker_order_id, symbol=symbol)
        except BrokerUnavailable:
            view = None
        if view is None:
            return OrderAck(broker_order_id=broker_order_id, status=pending)
        status = view.status if view.status in FINAL_STATUSES else (pending if pending == "pending_cancel" else view.status)
        return OrderAck(
            broker_order_id=view.broker_order_id,
            status=status,
            filled_qty=view.filled_qty,
            avg_fill_price=view.avg_fill_price,
            raw=view.raw,
        )

    def _chain(self, broker_order_id: str, symbol: str | None) -> _Chain:
        try:
            day, odno = parse_order_ref(broker_order_id)
        except ValueError:
            raise BrokerRejected(f"{broker_order_id!r} is not a KIS order id.") from None
        code = self._code(symbol) if symbol else ""
        chain = self._find_chain(day, odno, code)
        if chain is None:
            raise BrokerRejected(f"KIS has no order {odno} of {day}.")
        return chain

    def _find_chain(self, day: str, odno: str, code: str) -> _Chain | None:
        """The chain holding order ``odno`` of ``day``: one query for the
        order; a second for the whole day of its stock when it belongs to a
        chain (it names an original order, or it was changed away)."""
        rows = self.client.daily_ccld(start=day, end=day, odno=odno, code=code)
        row = next((r for r in rows if str(r.get("odno") or "").strip() == odno), None)
        if row is None:
            return None
        origin = str(row.get("orgn_odno") or "").strip()
        changed_away = _remaining(row) == 0 and _dec(row.get("tot_ccld_qty")) < _dec(row.get("ord_qty"))
        if (origin and origin != odno) or changed_away:
            rows = self.client.daily_ccld(start=day, end=day, code=str(row.get("pdno") or code).strip())
        for chain in _chains(rows):
            if any(str(r.get("odno") or "").strip() == odno for r in chain.rows):
                return chain
        return None

    def get_order(
        self, *, client_order_id: str | None = None, broker_order_id: str | None = None, symbol: str | None = None
    ) -> OrderStatus | None:
        """The order (its whole revise/cancel chain) named by ``broker_order_id``
        (``<ord_dt>-<ODNO>`` or a bare ODNO of today). KIS has no client
        order ids: without a broker id this is None (the OMS matches by
        symbol, side, qty and time among ``orders_since``)."""
        if not broker_order_id:
            return None
        try:
            day, odno = parse_order_ref(broker_order_id)
        except ValueError:
            return None
        code = ""
        if symbol:
            try:
                code = protocol.kis_code(symbol)
            except ValueError:
                return None
        chain = self._find_chain(day, odno, code)
        return None if chain is None else _chain_view(chain, kst_today().strftime(protocol.DATE_FORMAT))

    def _views(self, start: date, end: date) -> list[OrderStatus]:
        rows = self.client.daily_ccld(start=start.strftime(protocol.DATE_FORMAT), end=end.strftime(protocol.DATE_FORMAT))
        today = kst_today().strftime(protocol.DATE_FORMAT)
        views = []
        for chain in _chains(rows):
            try:
                views.append(_chain_view(chain, today))
            except (ValueError, TypeError):
                logger.warning("KIS account %s: an order row could not be read: %r", self.account_id, chain.root.get("odno"))
        self._last_scan = (start, end, time.monotonic(), views)
        return views

    def open_orders(self) -> list[OrderStatus]:
        """Today's working orders. Reconciliation asks for the orders since
        its checkpoint and then for these: a scan of today made by this
        broker within ``SCAN_REUSE`` seconds answers both (each scan pages
        through every order of the day at 2 requests a second on paper)."""
        today = kst_today()
        scan = self._last_scan
        if scan is not None and scan[0] <= today <= scan[1] and time.monotonic() - scan[2] < SCAN_REUSE:
            views = scan[3]
        else:
            views = self._views(today, today)
        return [v for v in views if v.status not in FINAL_STATUSES]

    def orders_since(self, since: datetime) -> list[OrderStatus]:
        """Every order of the Korean trading days from ``since``'s to today
        (KIS keeps three months; the query pages)."""
        today = kst_today()
        start = min(since.astimezone(KST).date(), today)
        start = max(start, today - timedelta(days=90))
        return self._views(start, today)

    def fills_since(self, since: datetime) -> list[Fill]:
        """KIS reports fills as per-order totals (``cumulative_fills``): none here."""
        return []

    # --- money -------------------------------------------------------------------------------

    def positions(self) -> list[BrokerPosition]:
        """Cash equities: what the account holds is in ``holdings``."""
        return []

    def holdings(self) -> list[Holding]:
        rows, _ = self.client.balance()
        held = []
        for row in rows:
            qty = _dec(row.get("hldg_qty"))
            code = str(row.get("pdno") or "").strip()
            if qty == 0 or not code:
                continue
            held.append(
                Holding(
                    symbol=protocol.kis_symbol(code),
                    qty=qty,
                    avg_price=_dec(row.get("pchs_avg_pric")),
                    last_price=_dec(row.get("prpr")) or None,
                    name=str(row.get("prdt_name") or "").strip(),
                )
            )
        return held

    def funds(self) -> Funds:
        """KRW money from the balance's summary row (output2).

        Cash is ``dnca_tot_amt`` (the deposit: what the account holds today,
        money reserved by working buy orders included). What may still be
        committed is ``prvs_rcdl_excc_amt`` (the D+2 deposit: after today's
        trades settle and working orders' reservations), KIS's nearest to
        buying power without another query (inquire-psbl-order). Equity is
        ``tot_evlu_amt`` (deposit plus holdings at the current price), else
        ``nass_amt``."""
        _, summary = self.client.balance()
        if not str(summary.get("dnca_tot_amt", "")).strip():
            raise BrokerUnavailable("KIS answered the balance without dnca_tot_amt.")
        cash = _dec(summary.get("dnca_tot_amt"))
        equity = _dec(summary.get("tot_evlu_amt")) or _dec(summary.get("nass_amt")) or cash
        settled = summary.get("prvs_rcdl_excc_amt")
        available = _dec(settled) if str(settled or "").strip() else cash
        available = max(min(available, equity), Decimal(0))
        fields = ("dnca_tot_amt", "nxdy_excc_amt", "prvs_rcdl_excc_amt", "scts_evlu_amt", "tot_evlu_amt", "nass_amt")
        return Funds(
            currency=CURRENCY,
            cash=cash,
            margin_used=Decimal(0),
            margin_available=available,
            equity=equity,
            balances=(Balance(currency=CURRENCY, cash=cash, available=available),),
            buying_power=available,
            rates={CURRENCY: Decimal(1)},
            raw={k: str(summary[k]) for k in fields if k in summary},
        )

    # --- market data ------------------------------------------------------------------------------

    def price(self, symbol: str) -> Quote:
        """The current price of one stock (inquire-price)."""
        out = self.client.price(self._code(symbol))
        last = _dec(out.get("stck_prpr"))
        if last <= 0:
            raise BrokerUnavailable(f"KIS answered no price for {symbol}.")
        change = _dec(out.get("prdy_vrss"), Decimal(0))
        return Quote(
            symbol=symbol,
            time=time.time(),
            last=last,
            volume=_dec(out.get("acml_vol")),
            day_open=_dec(out.get("stck_oprc")) or None,
            day_high=_dec(out.get("stck_hgpr")) or None,
            day_low=_dec(out.get("stck_lwpr")) or None,
            prev_close=last - change,
            extra={k: str(out[k]) for k in ("stck_mxpr", "stck_llam", "aspr_unit", "prdy_ctrt") if k in out},
        )

    def daily_bars(self, symbol: str, *, start: date, end: date, period: str = "D") -> list[Bar]:
        """Daily (or W/M/Y) bars between two dates, oldest first; KIS answers
        at most 100 rows a call. A bar's time is its day's midnight in Korea."""
        if period not in ("D", "W", "M", "Y"):
            raise BrokerRejected("period is one of D, W, M, Y.")
        rows = self.client.daily_bars(
            self._code(symbol), start=start.strftime(protocol.DATE_FORMAT), end=end.strftime(protocol.DATE_FORMAT), period=period
        )
        bars = []
        for row in rows:
            at = _kst_time(str(row.get("stck_bsop_date") or ""), "000000")
            if at is None or _dec(row.get("stck_clpr")) <= 0:
                continue
            bars.append(_bar(at, row, "stck_clpr", "acml_vol"))
        return sorted(bars, key=lambda b: b.time)

    def minute_bars(self, symbol: str, *, until: dtime | None = None) -> list[Bar]:
        """Today's 1-minute bars up to ``until`` (Korea time; now when None), oldest first, 30 a call."""
        hhmmss = (until or datetime.now(KST).time()).strftime("%H%M%S")
        rows = self.client.minute_bars(self._code(symbol), until=hhmmss)
        bars = []
        for row in rows:
            at = _kst_time(str(row.get("stck_bsop_date") or ""), str(row.get("stck_cntg_hour") or ""))
            if at is None or _dec(row.get("stck_prpr")) <= 0:
                continue
            bars.append(_bar(at, row, "stck_prpr", "cntg_vol"))
        return sorted(bars, key=lambda b: b.time)

    # --- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _code(symbol: str) -> str:
        try:
            return protocol.kis_code(symbol)
        except ValueError as exc:
            raise BrokerRejected(str(exc)) from None


def _bar(at: datetime, row: dict[str, Any], close: str, volume: str) -> Bar:
    last = _dec(row.get(close))
    return Bar(
        time=int(at.timestamp()),
        open=_dec(row.get("stck_oprc")) or last,
        high=_dec(row.get("stck_hgpr")) or last,
        low=_dec(row.get("stck_lwpr")) or last,
        close=last,
        volume=_dec(row.get(volume)),
    )


def kis_broker_factory(account: BrokerAccount) -> KisBroker:
    return KisBroker(account)
