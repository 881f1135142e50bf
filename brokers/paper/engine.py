"""The paper venue's matching core: one account's book in memory, pure Python,
deterministic (no clock, no randomness, no Django: time comes in as ``now``,
identifiers from the book's own counters).

Matching
--------
* market: buys fill at the ask, sells at the bid, moved against the trader by
  ``slippage_bps`` (exactly, so a fill may fall between ticks), up to the
  quote's size; the rest keeps working as a market order and fills on later
  quotes. A market order without a fresh quote (none, or older than
  ``stale_seconds``) is rejected.
* limit: a buy fills when ask <= limit, at the ask (price improvement); a sell
  when bid >= limit, at the bid; up to the quote's size.
* stop / stop_limit: a buy triggers when ask >= stop, a sell when bid <= stop
  (the last price when that side is missing), then acts as a market order
  (with slippage) or as a limit order on the same quote.
* ioc: fills what it can at once and cancels the rest (a stop: once triggered).
* day: expires at the close of its instrument's session (the next one when
  sent outside it); 24x7 instruments at midnight in their timezone.
* A quote's size is consumed by the book's orders in priority order (market
  first, then best price, then time) and the same quote seen again keeps what
  is left, so running the listener twice never fills twice. Quotes older than
  the last one seen are ignored; stale quotes never fill anything.

Cash and margin model
---------------------
Cash is a ledger of balances per currency (ledger.py); the account has a base
currency, and ``rates`` (given as data, like marks) value one unit of each
currency in it. Prices, fees and P&L are in the instrument's currency, and so
is every balance change a fill makes. Futures are margin products: a trade
moves cash only by its realized P&L and its fee. Everything else (stock,
crypto, option, index, fx) is a cash product: buying spends the notional
(qty * price * multiplier), selling returns it (in the instrument's currency:
proceeds are not converted back), and the fee is paid on top; short sales
are allowed and credit the proceeds. A cash product bought is a position
valued at market, never also a balance. With marks (the last quote's
``last``, else the average price), all in the base currency:

    equity        = sum(balance * rate) + sum(cash products: qty * mark * multiplier * rate)
                         + sum(futures: (mark - avg) * qty * multiplier * rate)
    margin in use = sum(|qty| * mark * multiplier * margin_rate * rate)
    buying power  = equity - margin in use - reserved for working orders

so that, fees, slippage and rate moves aside, equity always equals the
starting cash plus realized plus unrealized P&L. An order is checked when
sent (and when changed): the part of it that opens or grows a position needs
``(qty * price * multiplier * margin_rate + fee) * rate`` (price: the limit,
the stop, or the expected market fill) within buying power, and that amount
stays reserved while the order works, shrinking as it fills. The part that
closes a position (net of other working orders on the same side) needs
nothing, so an account can always get out. Fills are not checked again, as at
real venues for orders already accepted.

A fill that would take the balance of a currency other than the base below
zero converts the shortfall from the base currency first (``fx_mode``
``convert``: two ``fx_conversion`` ledger entries, rounded up to each
currency's minor units), so the opening part of an order also needs its cost
in that currency, or its conversion, within the base currency's balance (a debit
left while no rate was known is converted by ``cover_debits``). With
``fx_mode`` ``refuse`` the opening part must be covered by the balance in the
instrument's currency, else the order is refused (a later loss or a fill
beyond it leaves a debit: a negative balance). An order in a currency
without a rate is refused.

Fees are ``max(min_fee, notional * fee_bps / 10000)`` per fill, in the
instrument's currency.
reduce_only orders are rejected when sent if they would not reduce the
position or exceed it; when they fill, they are capped to what is left of the
position and the remainder is canceled by the venue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Protocol

from brokers.paper import orderbook
from brokers.paper.book import (
    BPS,
    BUY,
    CANCELED,
    DAY,
    DEPOSIT,
    EXPIRED,
    FILLED,
    FINAL,
    FX_CONVERT,
    FX_REFUSE,
    IOC,
    LIMIT,
    PARTIALLY_FILLED,
    REJECTED,
    SCALE,
    SELL,
    STOP,
    STOP_LIMIT,
    WITHDRAWAL,
    WORKING,
    ZERO,
    Cause,
    Changes,
    EngineConfig,
    Event,
    FillEvent,
    FundsView,
    InstrumentSpec,
    LedgerEntry,
    MarketState,
    Order,
    OrderRejected,
    Position,
    StatusEvent,
)
from brokers.paper.ledger import Ledger, LedgerRefused
from brokers.paper.orderbook import SymbolBook
from brokers.paper.rules import LARGEST_NOTIONAL, day_order_expiry, modify_refusal, new_order_refusal

if TYPE_CHECKING:
    from brokers.base import OrderRequest

__all__ = ["PaperEngine", "QuoteLike", "day_order_expiry"]

IOC_REMAINDER = "IOC: the unfilled remainder is canceled."


def _amount(value: Decimal) -> str:
    return f"{value.normalize():f}"


def _insufficient(requirement: Decimal, available: Decimal, currency: str) -> str:
    return f"Insufficient buying power: the order needs {_amount(requirement)} {currency}, {_amount(max(available, ZERO))} {currency} is available."


class QuoteLike(Protocol):
    """What the engine reads of a quote (``marketdata.types.Quote`` fits)."""

    symbol: str
    time: float
    last: Decimal
    bid: Decimal | None
    ask: Decimal | None
    bid_size: Decimal | None
    ask_size: Decimal | None


class PaperEngine:
    """One account's book. Every mutating method returns the events it caused,
    in order; ``take_changes()`` hands the storage layer what to write."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        cash: Decimal = ZERO,
        fees_paid: Decimal = ZERO,
        next_order_no: int = 1,
        next_trade_no: int = 1,
        reserved_elsewhere: Decimal = ZERO,
        working_elsewhere: Mapping[tuple[str, str], Decimal] | None = None,
        base_currency: str = "USD",
        balances: Mapping[str, Decimal] | None = None,
    ) -> None:
        """``cash`` is the base currency's balance; ``balances`` the others
        (or all of them). Reservations are in the base currency."""
        self.config = config
        self.ledger = Ledger(config, cash=cash, fees_paid=fees_paid, base_currency=base_currency, balances=balances)
        self.next_order_no = next_order_no
        self.next_trade_no = next_trade_no
        self.orders: dict[str, Order] = {}
        self.markets: dict[str, MarketState] = {}
        # Reserved for the loaded working orders (kept incrementally) and for
        # the account's working orders that were not loaded (a storage layer
        # may load one symbol's orders only: those others are never touched
        # here, so their reservations stay what they were when loaded).
        self.reserved_total = ZERO
        self.reserved_elsewhere = reserved_elsewhere
        # Likewise the remaining qty of the working orders not loaded, per
        # (symbol, side), for the symbols whose closing orders net against it.
        self.working_elsewhere: dict[tuple[str, str], Decimal] = dict(working_elsewhere or {})
        self._by_client: dict[str, Order] = {}
        self._books: dict[str, SymbolBook] = {}
        self._expiries: list[tuple[float, int, Order]] = []
        self._expiry_cache: dict[tuple[str, str], tuple[float, float]] = {}
        self._slip_buy = 1 + config.slippage_bps / BPS
        self._slip_sell = 1 - config.slippage_bps / BPS
        self._changed_orders: dict[int, Order] = {}
        self._changed_markets: dict[str, MarketState] = {}
        self._new_fills: list[FillEvent] = []

    @property
    def cash(self) -> Decimal:
        """The base currency's balance."""
        return self.ledger.cash

    @property
    def base_currency(self) -> str:
        return self.ledger.base_currency

    @property
    def balances(self) -> dict[str, Decimal]:
        return self.ledger.balances

    @property
    def fees_paid(self) -> Decimal:
        return self.ledger.fees_paid

    @property
    def positions(self) -> dict[str, Position]:
        return self.ledger.positions

    @property
    def specs(self) -> dict[str, InstrumentSpec]:
        return self.ledger.specs

    # --- loading a saved book ------------------------------------------------------

    def add_spec(self, spec: InstrumentSpec) -> None:
        """Tell the book an instrument's contract terms."""
        self.ledger.specs[spec.symbol] = spec

    def restore_order(self, order: Order) -> None:
        """Put back an order loaded from storage (working or not)."""
        self.orders[order.broker_order_id] = order
        if order.client_order_id:
            self._by_client[order.client_order_id] = order
        if order.status in WORKING:
            self._activate(order)

    def restore_position(self, position: Position) -> None:
        self.ledger.restore_position(position)

    def restore_market(self, symbol: str, state: MarketState) -> None:
        self.markets[symbol] = state
        self.ledger.set_mark(symbol, state.last)

    def set_marks(self, marks: Mapping[str, Decimal]) -> None:
        """Newer marks for valuation (margin checks), e.g. from the quote cache."""
        self.ledger.set_marks(marks)

    def set_rates(self, rates: Mapping[str, Decimal]) -> None:
        """FX rates to the base currency (``{currency: value of one unit}``),
        for valuation, margin checks and conversions."""
        self.ledger.set_rates(rates)

    def currencies(self) -> set[str]:
        """Every currency the book holds or trades in (the rates it needs)."""
        ledger = self.ledger
        return {*ledger.balances, *(ledger.currency_of(spec) for spec in ledger.specs.values())}

    def take_changes(self) -> Changes:
        """Orders, fills, positions and market states changed since the last call."""
        changes = Changes(
            orders=sorted(self._changed_orders.values(), key=lambda o: o.no),
            fills=self._new_fills,
            positions=list(self.ledger.changed_positions.values()),
            markets=self._changed_markets,
            entries=self.ledger.entries,
            balances={currency: self.ledger.balance(currency) for currency in sorted(self.ledger.changed_balances)},
        )
        self._changed_orders, self._changed_markets, self._new_fills = {}, {}, []
        self.ledger.changed_positions, self.ledger.entries, self.ledger.changed_balances = {}, [], set()
        return changes

    # --- reads -----------------------------------------------------------------------

    def order(self, broker_order_id: str) -> Order | None:
        return self.orders.get(broker_order_id)

    def order_by_client_id(self, client_order_id: str) -> Order | None:
        return self._by_client.get(client_order_id)

    def working_orders(self) -> list[Order]:
        return sorted((o for o in self.orders.values() if o.status in WORKING), key=lambda o: o.no)

    def working_symbols(self) -> set[str]:
        return {symbol for symbol, book in self._books.items() if book.count}

    def funds(self, marks: Mapping[str, Decimal] | None = None) -> FundsView:
        """Balances; cash, equity and margin in the base currency, valued at
        ``marks`` (else the book's own) and the book's rates."""
        ledger = self.ledger
        equity, unrealized, realized, position_margin = ledger.valuation(marks)
        currencies = sorted(self.currencies())
        return FundsView(
            cash=ledger.cash_value(),
            equity=equity,
            unrealized_pnl=unrealized,
            realized_pnl=realized,
            position_margin=position_margin,
            order_margin=self.order_margin,
            buying_power=equity - position_margin - self.order_margin,
            fees_paid=ledger.fees_paid,
            base_currency=ledger.base_currency,
            balances={c: ledger.balance(c) for c in currencies if c in ledger.balances},
            rates={c: rate for c in currencies if (rate := ledger.rate(c)) is not None},
            unvalued=ledger.unvalued(),
        )

    @property
    def order_margin(self) -> Decimal:
        """Reserved for every working order of the account, loaded or not."""
        return self.reserved_total + self.reserved_elsewhere

    def buying_power(self) -> Decimal:
        equity, _, _, position_margin = self.ledger.valuation()
        return equity - position_margin - self.order_margin

    def cover_debits(self, now: float) -> None:
        """In convert mode, top up from the base currency every other currency
        left below zero (a fill booked while its rate was unknown)."""
        ledger = self.ledger
        if self.config.fx_mode != FX_CONVERT:
            return
        for currency, balance in sorted(ledger.balances.items()):
            if currency != ledger.base_currency and balance < 0:
                ledger.convert_into(currency, -balance, now)

    def adjust(self, currency: str, amount: Decimal, now: float, *, note: str = "") -> LedgerEntry:
        """A deposit (``amount`` > 0) or a withdrawal (< 0) of ``currency``.
        Raises LedgerRefused when a withdrawal would take the balance below
        zero, and for an amount the book cannot store exactly."""
        if not amount.is_finite() or not amount:
            raise LedgerRefused("The amount must be a non-zero number.")
        if abs(amount) >= LARGEST_NOTIONAL or amount != amount.quantize(SCALE):
            raise LedgerRefused(f"The amount must be below {LARGEST_NOTIONAL:,} with at most 10 decimal places.")
        balance = self.ledger.balance(currency)
        if balance + amount >= LARGEST_NOTIONAL:
            raise LedgerRefused(f"The balance would reach {LARGEST_NOTIONAL:,} {currency}.")
        if amount < 0 and balance + amount < 0:
            raise LedgerRefused(
                f"A withdrawal of {_amount(-amount)} {currency} would take the balance below zero ({_amount(balance)} {currency})."
            )
        return self.ledger.post(currency, amount, DEPOSIT if amount > 0 else WITHDRAWAL, now, note=note)

    # --- commands ----------------------------------------------------------------------

    def submit(self, order: OrderRequest, quote: QuoteLike | None, instrument_spec: InstrumentSpec, now: float) -> list[Event]:
        """Accept (or reject) a new order and match it at once against ``quote``.

        Returns the fills of the immediate match, then one ``request`` status
        event with the order's state (``rejected`` with the reason in
        ``message`` when refused). A client order id seen before returns that
        order's state and changes nothing (idempotent, as at real venues)."""
        if order.client_order_id:
            existing = self._by_client.get(order.client_order_id)
            if existing is not None:
                return [self._status(existing, "request")]
        spec = instrument_spec
        if order.symbol != spec.symbol:
            raise ValueError(f"instrument spec {spec.symbol} given for an order on {order.symbol}")
        self.ledger.specs[spec.symbol] = spec
        market = self._market_for(spec.symbol, quote)
        no = self.next_order_no
        self.next_order_no = no + 1
        o = Order(
            no=no,
            broker_order_id=f"P{no:06d}",
            client_order_id=order.client_order_id or "",
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            qty=order.qty,
            price=order.price,
            stop_price=order.stop_price,
            time_in_force=order.time_in_force,
            reduce_only=order.reduce_only,
            position_ref=order.position_ref,
            created_at=now,
            updated_at=now,
        )
        self.orders[o.broker_order_id] = o
        if o.client_order_id:
            self._by_client[o.client_order_id] = o
        self._changed_orders[no] = o
        reason = new_order_refusal(
            o, spec, market, now=now, stale_seconds=self.config.stale_seconds, reducible=self.ledger.reducible(o.symbol, o.side)
        )
        if reason is None:
            reason = self._no_rate(spec)
        if reason is None:
            requirement, opening, cost = self._requirement(o, spec, market, counted=ZERO)
            if opening > 0:
                available = self.buying_power()
                if requirement > available:
                    reason = _insufficient(requirement, available, self.ledger.base_currency)
                else:
                    reason = self._currency_refusal(spec, cost)
            o.reserved = requirement
        if reason is not None:
            o.status, o.message, o.reserved = REJECTED, reason, ZERO
            return [self._status(o, "request")]
        if o.time_in_force == DAY:
            o.expires_at = self._day_expiry(spec, now)
        self._activate(o)
        events: list[Event] = []
        if market is not None and now - market.time <= self.config.stale_seconds:
            self._match_one(o, market, spec, now, events)
        self._cancel_ioc_remainder(o, now)
        events.append(self._status(o, "request"))
        return events

    def cancel(self, broker_order_id: str, now: float) -> list[Event]:
        """Cancel a working order. Raises OrderRejected for unknown or final orders."""
        o = self._working(broker_order_id, "canceled")
        self._finish(o, CANCELED, "Canceled on request.", now)
        return [self._status(o, "request")]

    def modify(
        self,
        broker_order_id: str,
        *,
        qty: Decimal | None = None,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
        quote: QuoteLike | None = None,
        now: float,
    ) -> list[Event]:
        """Change the quantity (not below the filled qty), the limit price or
        the stop price of a working order, then match it at once. Raises
        OrderRejected, changing nothing, when the change is not allowed
        (final order, bad value, not enough buying power)."""
        o = self._working(broker_order_id, "modified")
        spec = self.ledger.spec(o.symbol)
        reason = modify_refusal(o, spec, qty=qty, price=price, stop_price=stop_price, reducible=self.ledger.reducible(o.symbol, o.side))
        if reason is not None:
            raise OrderRejected(reason)
        market = self._market_for(o.symbol, quote)
        old = (o.qty, o.price, o.stop_price)
        old_remaining, old_reserved = o.remaining, o.reserved
        o.qty = o.qty if qty is None else qty
        o.price = o.price if price is None else price
        o.stop_price = o.stop_price if stop_price is None else stop_price
        try:
            requirement, opening, cost = self._requirement(o, spec, market, counted=old_remaining)
        except InvalidOperation:
            o.qty, o.price, o.stop_price = old
            raise OrderRejected("The order's notional is out of range.") from None
        if opening > 0:
            available = self.buying_power() + old_reserved
            refusal = (
                _insufficient(requirement, available, self.ledger.base_currency)
                if requirement > available
                else self._currency_refusal(spec, cost)
            )
            if refusal is not None:
                o.qty, o.price, o.stop_price = old
                raise OrderRejected(refusal)
        self._books[o.symbol].resized(o, old_remaining)
        self.reserved_total += requirement - old_reserved
        o.reserved = requirement
        o.updated_at = now
        o.message = "Modified on request."
        self._changed_orders[o.no] = o
        events: list[Event] = []
        if o.remaining == 0:
            # Cut down to what had filled already: nothing is left to work.
            self._finish(o, FILLED, "Modified to the filled qty.", now)
        else:
            # A new version drops the old book entries; the order re-enters
            # at its new prices (and loses its time priority, as at venues).
            book = self._books[o.symbol]
            book.unplace(o)
            o.version += 1
            book.place(o)
            if market is not None and now - market.time <= self.config.stale_seconds:
                self._match_one(o, market, spec, now, events)
            self._cancel_ioc_remainder(o, now)
        events.append(self._status(o, "request"))
        return events

    def on_quote(self, quote: QuoteLike, now: float) -> list[Event]:
        """Match the working orders of ``quote.symbol`` against it: trigger
        stops, fill buys against the ask and sells against the bid, cancel
        the unfilled part of IOC stops triggered now. Returns fills, then one
        status event per order changed."""
        events: list[Event] = []
        market = self._see_quote(quote)
        book = self._books.get(quote.symbol)
        spec = self.ledger.specs.get(quote.symbol)
        if market is None or book is None or not book.count or spec is None or now - market.time > self.config.stale_seconds:
            # Without the instrument's terms (multiplier!) nothing may fill.
            return events
        triggered_ioc = self._trigger_stops(book, market)
        self._match_side(book, BUY, market, spec, now, events)
        self._match_side(book, SELL, market, spec, now, events)
        for o in triggered_ioc:
            if o.status in WORKING:
                self._finish(o, CANCELED, IOC_REMAINDER, now)
                events.append(self._status(o, "venue"))
        # One ``fill`` status per order that filled and that no venue event reported.
        reported = {e.broker_order_id for e in events if isinstance(e, StatusEvent)}
        for e in list(events):
            if isinstance(e, FillEvent) and e.broker_order_id not in reported:
                reported.add(e.broker_order_id)
                events.append(self._status(self.orders[e.broker_order_id], "fill"))
        return events

    def on_quotes(self, quotes: Iterable[QuoteLike], now: float) -> list[Event]:
        """``on_quote`` for each quote, in order."""
        events: list[Event] = []
        for quote in quotes:
            events.extend(self.on_quote(quote, now))
        return events

    def expire_day_orders(self, now: float) -> list[Event]:
        """Expire every day order whose session closed at or before ``now``."""
        events: list[Event] = []
        heap = self._expiries
        while heap and heap[0][0] <= now:
            expires_at, _, o = heappop(heap)
            if o.status not in WORKING or o.expires_at != expires_at:
                continue
            self._finish(o, EXPIRED, "Day order expired at the session close.", now)
            events.append(self._status(o, "venue"))
        return events

    # --- margin ---------------------------------------------------------------------

    def _no_rate(self, spec: InstrumentSpec) -> str | None:
        currency = self.ledger.currency_of(spec)
        if self.ledger.rate(currency) is None:
            return f"No FX rate from {currency} to {self.ledger.base_currency}: the order cannot be valued."
        return None

    def _currency_refusal(self, spec: InstrumentSpec, cost: Decimal) -> str | None:
        """Why the account cannot pay ``cost`` (in the instrument's currency)
        for an order's opening part: in refuse mode, the balance in that
        currency must cover it; in convert mode, the base currency must cover
        the conversion of what the balance lacks."""
        ledger = self.ledger
        currency, base = ledger.currency_of(spec), ledger.base_currency
        have = max(ledger.balance(currency), ZERO)
        if currency == base or cost <= have:
            return None
        if self.config.fx_mode == FX_REFUSE:
            return (
                f"The order needs {_amount(cost)} {currency} and the account holds {_amount(have)} {currency}; "
                f"the venue does not convert (PAPER_FX_MODE=refuse): deposit {currency} first."
            )
        conversion = ledger.conversion_cost(currency, cost - have)
        if conversion is None:
            return self._no_rate(spec)
        paid = conversion[1]
        if paid > ledger.cash:
            return (
                f"Converting {_amount(conversion[0])} {currency} for the order needs {_amount(paid)} {base}, "
                f"the account holds {_amount(max(ledger.cash, ZERO))} {base}."
            )
        return None

    def _requirement(
        self, o: Order, spec: InstrumentSpec, market: MarketState | None, *, counted: Decimal
    ) -> tuple[Decimal, Decimal, Decimal]:
        """(amount to reserve in the base currency, qty that opens or grows a
        position, what the opening part costs in the instrument's currency:
        its notional for a cash product, and the fee) for what is left of
        ``o``. ``counted``: what of ``o`` the book's working qty holds already
        (0 for a new order)."""
        remaining = o.remaining
        if o.reduce_only:
            opening = ZERO
        else:
            held = self.ledger.held(o.symbol)
            if (held < 0 and o.side == BUY) or (held > 0 and o.side == SELL):
                # Closes first, net of other working orders closing the same position.
                book = self._books.get(o.symbol)
                loaded = ZERO if book is None else book.working_on_side(o.side)
                same_side = loaded + self.working_elsewhere.get((o.symbol, o.side), ZERO) - counted
                opening = max(remaining - max(abs(held) - same_side, ZERO), ZERO)
            else:
                opening = remaining
        reference = self._reference_price(o, market)
        rate = self.ledger.rate(self.ledger.currency_of(spec))
        if reference is None or rate is None:
            return ZERO, opening, ZERO
        notional = reference * spec.multiplier
        fee = self.ledger.fee((remaining * notional).quantize(SCALE))
        margin = (opening * notional * self.config.margin_rate(spec.type)).quantize(SCALE)
        cost = fee if spec.is_margin_product else (opening * notional).quantize(SCALE) + fee
        return ((margin + fee) * rate).quantize(SCALE), opening, cost

    def _reference_price(self, o: Order, market: MarketState | None) -> Decimal | None:
        """The price an order's margin is counted at: its limit, its stop, or
        the expected market fill."""
        if o.order_type == LIMIT or o.order_type == STOP_LIMIT:
            return o.price
        if o.order_type == STOP and not o.triggered:
            return o.stop_price
        side_price = None if market is None else (market.ask if o.side == BUY else market.bid)
        if side_price is None:
            return self.ledger.marks.get(o.symbol)
        return (side_price * (self._slip_buy if o.side == BUY else self._slip_sell)).quantize(SCALE)

    # --- the book ---------------------------------------------------------------------

    def _working(self, broker_order_id: str, verb: str) -> Order:
        o = self.orders.get(broker_order_id)
        if o is None:
            raise OrderRejected(f"Unknown order {broker_order_id}.")
        if o.status in FINAL:
            raise OrderRejected(f"Order {broker_order_id} is {o.status}: it cannot be {verb}.")
        return o

    def _day_expiry(self, spec: InstrumentSpec, now: float) -> float:
        # The first close after ``now`` is also the first close after any
        # later time before it: cache it per session until then.
        key = (spec.session, spec.timezone)
        cached = self._expiry_cache.get(key)
        if cached is not None and cached[0] <= now < cached[1]:
            return cached[1]
        expires_at = day_order_expiry(spec.session, spec.timezone, now)
        self._expiry_cache[key] = (now, expires_at)
        return expires_at

    def _activate(self, o: Order) -> None:
        """A working order enters the book."""
        book = self._books.get(o.symbol)
        if book is None:
            book = self._books[o.symbol] = SymbolBook()
        book.add(o)
        self.reserved_total += o.reserved
        if o.expires_at is not None:
            heappush(self._expiries, (o.expires_at, o.no, o))

    def _finish(self, o: Order, status: str, message: str, now: float) -> None:
        """A working order leaves the book with a final status."""
        self._books[o.symbol].remove(o)
        self.reserved_total -= o.reserved
        o.reserved = ZERO
        o.status = status
        o.message = message
        o.updated_at = now
        self._changed_orders[o.no] = o

    def _cancel_ioc_remainder(self, o: Order, now: float) -> None:
        # An IOC stop waits for its trigger; then it is IOC like any other.
        if o.time_in_force == IOC and o.status in WORKING and not (o.is_stop and not o.triggered):
            self._finish(o, CANCELED, IOC_REMAINDER, now)

    def _trigger(self, o: Order) -> None:
        o.triggered = True
        o.version += 1
        self._books[o.symbol].place(o)
        self._changed_orders[o.no] = o

    # --- matching ---------------------------------------------------------------------

    def _see_quote(self, quote: QuoteLike) -> MarketState | None:
        """The book's market state after ``quote``; None when it is older than
        the last quote seen (a late delivery: ignored)."""
        state = self.markets.get(quote.symbol)
        if state is not None:
            if quote.time < state.time:
                return None
            if state.same_quote(quote.time, quote.last, quote.bid, quote.ask, quote.bid_size, quote.ask_size):
                return state
        state = MarketState(
            time=quote.time,
            last=quote.last,
            bid=quote.bid,
            ask=quote.ask,
            bid_size=quote.bid_size,
            ask_size=quote.ask_size,
            bid_left=quote.bid_size,
            ask_left=quote.ask_size,
        )
        self.markets[quote.symbol] = state
        self.ledger.set_mark(quote.symbol, quote.last)
        # Not a change to save yet: only a fill (in _fill) makes the state
        # worth keeping. A quote nothing filled on may be forgotten; seen
        # again after a reload it starts with its whole size, which is right.
        return state

    def _market_for(self, symbol: str, quote: QuoteLike | None) -> MarketState | None:
        if quote is not None:
            if quote.symbol != symbol:
                raise ValueError(f"quote for {quote.symbol} given for an order on {symbol}")
            state = self._see_quote(quote)
            if state is not None:
                return state
        return self.markets.get(symbol)

    def _trigger_stops(self, book: SymbolBook, market: MarketState) -> list[Order]:
        """Trigger every stop the quote crosses; returns the triggered IOC orders."""
        ioc: list[Order] = []
        buy_reference = market.ask if market.ask is not None else market.last
        while (entry := orderbook.top(book.buy_stops)) is not None and buy_reference >= entry[0]:
            heappop(book.buy_stops)
            self._trigger(entry[3])
            if entry[3].time_in_force == IOC:
                ioc.append(entry[3])
        sell_reference = market.bid if market.bid is not None else market.last
        while (entry := orderbook.top(book.sell_stops)) is not None and sell_reference <= -entry[0]:
            heappop(book.sell_stops)
            self._trigger(entry[3])
            if entry[3].time_in_force == IOC:
                ioc.append(entry[3])
        return ioc

    def _match_side(self, book: SymbolBook, side: str, market: MarketState, spec: InstrumentSpec, now: float, events: list[Event]) -> None:
        """Fill one side's marketable orders in priority (market orders by
        time, then limits by price and time) while the quote has size left."""
        buy = side == BUY
        price = market.ask if buy else market.bid
        if price is None:
            return
        for o in book.markets(side):
            left = market.ask_left if buy else market.bid_left
            if left is not None and left <= 0:
                return
            self._match_one(o, market, spec, now, events)
        heap = book.buy_limits if buy else book.sell_limits
        while (entry := orderbook.top(heap)) is not None:
            left = market.ask_left if buy else market.bid_left
            if left is not None and left <= 0:
                return
            if (price > -entry[0]) if buy else (price < entry[0]):
                return  # the best limit is not marketable: none is
            self._match_one(entry[3], market, spec, now, events)
            if entry[3].status in WORKING:
                return  # the quote's size is used up
            heappop(heap)

    def _match_one(self, o: Order, market: MarketState, spec: InstrumentSpec, now: float, events: list[Event]) -> None:
        """Match one working order against a fresh market state."""
        if o.is_stop and not o.triggered:
            assert o.stop_price is not None
            if o.side == BUY:
                hit = (market.ask if market.ask is not None else market.last) >= o.stop_price
            else:
                hit = (market.bid if market.bid is not None else market.last) <= o.stop_price
            if not hit:
                return
            self._trigger(o)
        if o.side == BUY:
            quoted, available = market.ask, market.ask_left
            if quoted is None:
                return
            if o.acts_as_market:
                price = (quoted * self._slip_buy).quantize(SCALE)
            elif o.price is not None and quoted <= o.price:
                price = quoted
            else:
                return
        else:
            quoted, available = market.bid, market.bid_left
            if quoted is None:
                return
            if o.acts_as_market:
                price = (quoted * self._slip_sell).quantize(SCALE)
            elif o.price is not None and quoted >= o.price:
                price = quoted
            else:
                return
        remaining = o.remaining
        qty = remaining if available is None or available >= remaining else available
        if qty > 0:
            self._fill(o, qty, price, spec, market, now, events)

    def _fill(
        self, o: Order, qty: Decimal, price: Decimal, spec: InstrumentSpec, market: MarketState, now: float, events: list[Event]
    ) -> None:
        capped = False
        if o.reduce_only:
            # The position may have shrunk since the order was accepted.
            allowed = self.ledger.reducible(o.symbol, o.side)
            if allowed <= 0:
                self._finish(o, CANCELED, "reduce_only: no position left to reduce; the order is canceled.", now)
                events.append(self._status(o, "venue"))
                return
            if qty > allowed:
                qty, capped = allowed, True
        buy = o.side == BUY
        trade_no = self.next_trade_no
        self.next_trade_no = trade_no + 1
        trade_id = f"PF{trade_no:06d}"
        fee = self.ledger.apply_fill(o.symbol, buy, qty, price, spec, now=now, trade_id=trade_id)
        before = o.remaining
        filled = o.filled_qty + qty
        o.avg_fill_price = price if o.avg_fill_price is None else ((o.avg_fill_price * o.filled_qty + price * qty) / filled).quantize(SCALE)
        o.filled_qty = filled
        o.updated_at = now
        self._books[o.symbol].filled(o, qty)
        if buy:
            if market.ask_left is not None:
                market.ask_left -= qty
        elif market.bid_left is not None:
            market.bid_left -= qty
        self._changed_markets[o.symbol] = market
        if o.reserved:
            # The reservation shrinks with what is left to fill; the
            # position's margin takes over for the filled part.
            reserved = (o.reserved * o.remaining / before).quantize(SCALE) if o.remaining else ZERO
            self.reserved_total += reserved - o.reserved
            o.reserved = reserved
        if o.remaining == 0:
            self._finish(o, FILLED, "", now)
        else:
            o.status = PARTIALLY_FILLED
            self._changed_orders[o.no] = o
        fill = FillEvent(
            trade_id, o.broker_order_id, o.client_order_id, o.symbol, o.side, qty, price, fee, now, self.ledger.currency_of(spec)
        )
        self._new_fills.append(fill)
        events.append(fill)
        if capped:
            self._finish(o, CANCELED, "reduce_only: the position was smaller than the order; the remainder is canceled.", now)
            events.append(self._status(o, "venue"))

    def _status(self, o: Order, cause: Cause) -> StatusEvent:
        return StatusEvent(
            o.broker_order_id, o.client_order_id, o.symbol, o.status, o.filled_qty, o.avg_fill_price, o.message, o.updated_at, cause
        )

    # --- for tests -------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Recompute the incremental totals from the orders and compare them
        (AssertionError when they differ). Tests and the benchmark call it."""
        reserved = ZERO
        per_symbol: dict[str, list[Decimal | int]] = {}
        for o in self.orders.values():
            assert ZERO <= o.filled_qty <= o.qty, o
            assert o.status in WORKING or o.status in FINAL, o
            assert o.status != "new" or o.filled_qty == 0, o
            if o.status in WORKING:
                reserved += o.reserved
                totals = per_symbol.setdefault(o.symbol, [ZERO, ZERO, 0])
                totals[0 if o.side == BUY else 1] += o.remaining
                totals[2] += 1
            else:
                assert o.reserved == 0, o
        assert reserved == self.reserved_total, (reserved, self.reserved_total)
        for symbol, book in self._books.items():
            totals = per_symbol.get(symbol, [ZERO, ZERO, 0])
            assert [book.working_buy, book.working_sell, book.count] == totals, (symbol, totals)
        for state in self.markets.values():
            assert state.ask_left is None or state.ask_left >= 0
            assert state.bid_left is None or state.bid_left >= 0
