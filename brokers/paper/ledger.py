"""Money of one paper account: a balance per currency, positions (average
cost), marks, FX rates, fees, and the valuation behind margin checks. Pure
Python: marks and rates come in as data. The cash/margin model is described in
engine.py.

Every change of a balance is a ``LedgerEntry`` (kept in ``entries`` until the
storage layer takes them), so the balances are always the sum of the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal

from brokers.paper.book import (
    BPS,
    BUY,
    FEE,
    FX_CONVERSION,
    FX_CONVERT,
    REALIZED_PNL,
    SCALE,
    TRADE,
    ZERO,
    EngineConfig,
    InstrumentSpec,
    LedgerEntry,
    Position,
)
from core.money import money_quantum

Valuation = tuple[Decimal, Decimal, Decimal, Decimal]  # equity, unrealized, realized, position margin
ONE = Decimal(1)


class LedgerRefused(Exception):
    """A balance change the ledger does not allow (a withdrawal below zero)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _up_to_minor_units(amount: Decimal, currency: str) -> Decimal:
    # A conversion never gives away a fraction of the smallest unit.
    return amount.quantize(money_quantum(currency), rounding=ROUND_CEILING)


class Ledger:
    def __init__(
        self,
        config: EngineConfig,
        *,
        cash: Decimal = ZERO,
        fees_paid: Decimal = ZERO,
        base_currency: str = "USD",
        balances: Mapping[str, Decimal] | None = None,
    ) -> None:
        """``balances`` per currency; ``cash`` (the single-currency form)
        adds to the base currency's balance."""
        self.config = config
        self.base_currency = base_currency
        self.balances: dict[str, Decimal] = dict(balances or {})
        if cash or base_currency not in self.balances:
            self.balances[base_currency] = self.balances.get(base_currency, ZERO) + cash
        self.fees_paid = fees_paid
        self.rates: dict[str, Decimal] = {}
        self.positions: dict[str, Position] = {}
        self.specs: dict[str, InstrumentSpec] = {}
        self.marks: dict[str, Decimal] = {}
        self.changed_positions: dict[str, Position] = {}
        self.changed_balances: set[str] = set()
        self.entries: list[LedgerEntry] = []
        self._fee_rate = config.fee_bps / BPS
        self._min_fee = config.min_fee
        # Valuation at the book's own marks, kept until a fill, a balance, a
        # rate or a mark of a held symbol changes it: every new order asks for it.
        self._valuation: Valuation | None = None

    # --- balances and rates --------------------------------------------------------

    @property
    def cash(self) -> Decimal:
        """The base currency's balance."""
        return self.balances.get(self.base_currency, ZERO)

    def balance(self, currency: str) -> Decimal:
        return self.balances.get(currency, ZERO)

    def currency_of(self, spec: InstrumentSpec) -> str:
        return spec.currency or self.base_currency

    def rate(self, currency: str) -> Decimal | None:
        """The value of one unit of ``currency`` in the base currency, or None."""
        return ONE if currency == self.base_currency else self.rates.get(currency)

    def set_rates(self, rates: Mapping[str, Decimal]) -> None:
        """Rates to the base currency (``{currency: value of one unit}``)."""
        changed = False
        for currency, rate in rates.items():
            if currency != self.base_currency and self.rates.get(currency) != rate:
                self.rates[currency] = rate
                changed = True
        if changed:
            self._valuation = None

    def post(self, currency: str, amount: Decimal, kind: str, now: float, *, trade_id: str = "", note: str = "") -> LedgerEntry:
        """Book ``amount`` (signed) on ``currency``'s balance as one entry."""
        amount = amount.quantize(SCALE)
        entry = LedgerEntry(currency=currency, amount=amount, kind=kind, rate=self.rate(currency), time=now, trade_id=trade_id, note=note)
        self.balances[currency] = self.balance(currency) + amount
        self.changed_balances.add(currency)
        self.entries.append(entry)
        self._valuation = None
        return entry

    def conversion_cost(self, currency: str, amount: Decimal) -> tuple[Decimal, Decimal] | None:
        """(``currency`` bought, base currency paid) to cover ``amount`` of
        ``currency``, rounded up to each one's minor units; None without a rate."""
        rate = self.rate(currency)
        if rate is None:
            return None
        bought = _up_to_minor_units(amount, currency)
        return bought, _up_to_minor_units(bought * rate, self.base_currency)

    def convert_into(self, currency: str, amount: Decimal, now: float, *, trade_id: str = "") -> bool:
        """Buy ``amount`` of ``currency`` with the base currency at the current
        rate: two ``fx_conversion`` entries. False (nothing booked) without a rate."""
        cost = self.conversion_cost(currency, amount)
        if cost is None:
            return False
        bought, paid = cost
        note = f"{paid} {self.base_currency} -> {bought} {currency}"
        self.post(self.base_currency, -paid, FX_CONVERSION, now, trade_id=trade_id, note=note)
        self.post(currency, bought, FX_CONVERSION, now, trade_id=trade_id, note=note)
        return True

    # --- positions ---------------------------------------------------------------------

    def restore_position(self, position: Position) -> None:
        self.positions[position.symbol] = position
        self._valuation = None

    def spec(self, symbol: str) -> InstrumentSpec:
        spec = self.specs.get(symbol)
        return spec if spec is not None else InstrumentSpec(symbol=symbol, currency=self.base_currency)

    def fee(self, notional: Decimal) -> Decimal:
        """``max(min_fee, notional * fee_bps / 10000)``, in the instrument's currency."""
        fee = (abs(notional) * self._fee_rate).quantize(SCALE)
        return fee if fee > self._min_fee else self._min_fee

    def held(self, symbol: str) -> Decimal:
        position = self.positions.get(symbol)
        return ZERO if position is None else position.qty

    def reducible(self, symbol: str, side: str) -> Decimal:
        """How much a ``side`` order may reduce the position (0 if it would grow it)."""
        held = self.held(symbol)
        return max(-held if side == BUY else held, ZERO)

    def set_mark(self, symbol: str, price: Decimal) -> None:
        if self.marks.get(symbol) != price:
            self.marks[symbol] = price
            if self._valuation is not None and self.held(symbol):
                self._valuation = None

    def set_marks(self, marks: Mapping[str, Decimal]) -> None:
        for symbol, price in marks.items():
            self.set_mark(symbol, price)

    def apply_fill(
        self, symbol: str, buy: bool, qty: Decimal, price: Decimal, spec: InstrumentSpec, *, now: float = 0.0, trade_id: str = ""
    ) -> Decimal:
        """Book a fill on the position (average cost) and on the balance of the
        instrument's currency; returns the fee (in that currency). In convert
        mode a balance the fill would take below zero is first topped up from
        the base currency (when a rate is known)."""
        currency = self.currency_of(spec)
        notional = (qty * price * spec.multiplier).quantize(SCALE)
        fee = self.fee(notional)
        position = self.positions.get(symbol)
        if position is None:
            position = self.positions[symbol] = Position(symbol=symbol)
        held = position.qty
        realized = ZERO
        new_qty = held + qty if buy else held - qty
        if held == 0 or (held > 0) == buy:
            position.avg_price = ((abs(held) * position.avg_price + qty * price) / abs(new_qty)).quantize(SCALE)
        else:
            closing = min(abs(held), qty)
            gain = (price - position.avg_price) * closing * spec.multiplier
            realized = (gain if held > 0 else -gain).quantize(SCALE)
            if new_qty == 0:
                position.avg_price = ZERO
            elif (new_qty > 0) != (held > 0):
                position.avg_price = price  # flipped: the rest opens at this price
        position.qty = new_qty
        position.realized_pnl += realized
        # Futures move cash only by realized P&L; a cash product by its notional.
        moves = [(REALIZED_PNL, realized)] if spec.is_margin_product else [(TRADE, -notional if buy else notional)]
        moves.append((FEE, -fee))
        after = self.balance(currency) + sum(amount for _, amount in moves)
        if currency != self.base_currency and after < 0 and self.config.fx_mode == FX_CONVERT:
            self.convert_into(currency, -after, now, trade_id=trade_id)
        for kind, amount in moves:
            if amount:
                self.post(currency, amount, kind, now, trade_id=trade_id)
        rate = self.rate(currency)
        if rate is not None:
            self.fees_paid += (fee * rate).quantize(SCALE)
        self.changed_positions[symbol] = position
        self._valuation = None
        return fee

    # --- valuation ---------------------------------------------------------------------

    def unvalued(self) -> tuple[str, ...]:
        """Currencies held (a balance or a position's) that have no rate."""
        held = {c for c, amount in self.balances.items() if amount} | {
            self.currency_of(self.spec(s)) for s, p in self.positions.items() if p.qty
        }
        return tuple(sorted(c for c in held if self.rate(c) is None))

    def cash_value(self) -> Decimal:
        """The balances in the base currency (those without a rate count for nothing)."""
        total = ZERO
        for currency, amount in self.balances.items():
            rate = self.rate(currency)
            if rate is not None:
                total += amount * rate
        return total.quantize(SCALE)

    def valuation(self, marks: Mapping[str, Decimal] | None = None) -> Valuation:
        """(equity, unrealized P&L, realized P&L, margin in use of positions),
        in the base currency, at ``marks``, else at the book's marks (the last
        quotes seen), else at the average price."""
        if marks is None and self._valuation is not None:
            return self._valuation
        equity = self.cash_value()
        unrealized = realized = margin = ZERO
        for symbol, position in self.positions.items():
            spec = self.spec(symbol)
            rate = self.rate(self.currency_of(spec))
            if rate is None:
                continue
            realized += position.realized_pnl * rate
            held = position.qty
            if not held:
                continue
            mark = (marks.get(symbol) if marks is not None else None) or self.marks.get(symbol) or position.avg_price
            value = mark * spec.multiplier * rate
            pnl = (mark - position.avg_price) * held * spec.multiplier * rate
            unrealized += pnl
            equity += pnl if spec.is_margin_product else held * value
            margin += abs(held) * value * self.config.margin_rate(spec.type)
        result = (equity.quantize(SCALE), unrealized.quantize(SCALE), realized.quantize(SCALE), margin.quantize(SCALE))
        if marks is None:
            self._valuation = result
        return result
