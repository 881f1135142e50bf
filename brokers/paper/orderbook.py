"""The working orders of one symbol, indexed for matching. Pure Python.

Market orders (and triggered stops) wait in time order; limit orders (and
triggered stop-limits) in price-then-time heaps; untriggered stops in heaps
by how close their stop is. Heap entries are ``(key, no, version, order)``;
an entry whose version or status no longer matches its order is dropped when
it reaches the top (lazy deletion), so cancels and changes cost O(1).
"""

from __future__ import annotations

from decimal import Decimal
from heapq import heappop, heappush

from brokers.paper.book import BUY, WORKING, ZERO, Order

Entry = tuple[Decimal, int, int, Order]


def valid(entry: Entry) -> bool:
    order = entry[3]
    return entry[2] == order.version and order.status in WORKING


def top(heap: list[Entry]) -> Entry | None:
    """The best live entry of ``heap`` (dead ones on the way are dropped)."""
    while heap:
        entry = heap[0]
        if valid(entry):
            return entry
        heappop(heap)
    return None


class SymbolBook:
    __slots__ = (
        "buy_limits",
        "buy_markets",
        "buy_stops",
        "count",
        "sell_limits",
        "sell_markets",
        "sell_stops",
        "working_buy",
        "working_sell",
    )

    def __init__(self) -> None:
        self.buy_markets: dict[int, Order] = {}
        self.sell_markets: dict[int, Order] = {}
        self.buy_limits: list[Entry] = []  # (-limit, ...): best (highest) first
        self.sell_limits: list[Entry] = []  # (limit, ...): lowest first
        self.buy_stops: list[Entry] = []  # (stop, ...): the lowest triggers first as the ask rises
        self.sell_stops: list[Entry] = []  # (-stop, ...): the highest triggers first as the bid falls
        # Remaining qty of working orders per side: closing orders net against it.
        self.working_buy = ZERO
        self.working_sell = ZERO
        self.count = 0

    def add(self, o: Order) -> None:
        """A working order enters."""
        self.count += 1
        if o.side == BUY:
            self.working_buy += o.remaining
        else:
            self.working_sell += o.remaining
        self.place(o)

    def remove(self, o: Order) -> None:
        """A working order leaves (before its status turns final)."""
        self.unplace(o)
        self.count -= 1
        if o.side == BUY:
            self.working_buy -= o.remaining
        else:
            self.working_sell -= o.remaining

    def filled(self, o: Order, qty: Decimal) -> None:
        if o.side == BUY:
            self.working_buy -= qty
        else:
            self.working_sell -= qty

    def resized(self, o: Order, old_remaining: Decimal) -> None:
        if o.side == BUY:
            self.working_buy += o.remaining - old_remaining
        else:
            self.working_sell += o.remaining - old_remaining

    def working_on_side(self, side: str) -> Decimal:
        return self.working_buy if side == BUY else self.working_sell

    def place(self, o: Order) -> None:
        """Index ``o`` by what it acts as now (call again after a trigger or
        a change, with a new ``version``)."""
        buy = o.side == BUY
        if o.acts_as_market:
            (self.buy_markets if buy else self.sell_markets)[o.no] = o
        elif o.acts_as_limit:
            assert o.price is not None
            if buy:
                heappush(self.buy_limits, (-o.price, o.no, o.version, o))
            else:
                heappush(self.sell_limits, (o.price, o.no, o.version, o))
        else:
            assert o.stop_price is not None
            if buy:
                heappush(self.buy_stops, (o.stop_price, o.no, o.version, o))
            else:
                heappush(self.sell_stops, (-o.stop_price, o.no, o.version, o))

    def unplace(self, o: Order) -> None:
        # Heap entries go lazily; only the market queues hold orders directly.
        (self.buy_markets if o.side == BUY else self.sell_markets).pop(o.no, None)

    def markets(self, side: str) -> list[Order]:
        """Market orders of ``side`` in time order."""
        queue = self.buy_markets if side == BUY else self.sell_markets
        return sorted(queue.values(), key=lambda o: o.no) if len(queue) > 1 else list(queue.values())
