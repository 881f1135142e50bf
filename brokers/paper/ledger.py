"""Money of one paper account: cash, positions (average cost), marks, fees,
and the valuation behind margin checks. Pure Python; the cash/margin model
is described in engine.py."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from brokers.paper.book import BPS, BUY, SCALE, ZERO, EngineConfig, InstrumentSpec, Position

Valuation = tuple[Decimal, Decimal, Decimal, Decimal]  # equity, unrealized, realized, position margin


class Ledger:
    def __init__(self, config: EngineConfig, *, cash: Decimal, fees_paid: Decimal = ZERO) -> None:
        self.config = config
        self.cash = cash
        self.fees_paid = fees_paid
        self.positions: dict[str, Position] = {}
        self.specs: dict[str, InstrumentSpec] = {}
        self.marks: dict[str, Decimal] = {}
        self.changed_positions: dict[str, Position] = {}
        self._fee_rate = config.fee_bps / BPS
        self._min_fee = config.min_fee
        # Valuation at the book's own marks, kept until a fill or a mark of a
        # held symbol changes it: every new order asks for it.
        self._valuation: Valuation | None = None

    def restore_position(self, position: Position) -> None:
        self.positions[position.symbol] = position
        self._valuation = None

    def spec(self, symbol: str) -> InstrumentSpec:
        spec = self.specs.get(symbol)
        return spec if spec is not None else InstrumentSpec(symbol=symbol)

    def fee(self, notional: Decimal) -> Decimal:
        """``max(min_fee, notional * fee_bps / 10000)``."""
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

    def apply_fill(self, symbol: str, buy: bool, qty: Decimal, price: Decimal, spec: InstrumentSpec) -> Decimal:
        """Book a fill on the position (average cost) and in cash; returns the fee."""
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
        if spec.is_margin_product:
            self.cash += realized - fee
        else:
            self.cash += (-notional if buy else notional) - fee
        self.fees_paid += fee
        self.changed_positions[symbol] = position
        self._valuation = None
        return fee

    def valuation(self, marks: Mapping[str, Decimal] | None = None) -> Valuation:
        """(equity, unrealized P&L, realized P&L, margin in use of positions)
        at ``marks``, else at the book's marks (the last quotes seen), else at
        the average price."""
        if marks is None and self._valuation is not None:
            return self._valuation
        equity = self.cash
        unrealized = realized = margin = ZERO
        rates = self.config.margin_rates
        default_rate = self.config.default_margin_rate
        for symbol, position in self.positions.items():
            realized += position.realized_pnl
            held = position.qty
            if not held:
                continue
            spec = self.spec(symbol)
            mark = (marks.get(symbol) if marks is not None else None) or self.marks.get(symbol) or position.avg_price
            mult = spec.multiplier
            pnl = (mark - position.avg_price) * held * mult
            unrealized += pnl
            equity += pnl if spec.is_margin_product else held * mark * mult
            margin += abs(held) * mark * mult * rates.get(spec.type, default_rate)
        result = (equity.quantize(SCALE), unrealized.quantize(SCALE), realized, margin.quantize(SCALE))
        if marks is None:
            self._valuation = result
        return result
