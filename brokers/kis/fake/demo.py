"""The demo's fake KIS market: one paper account and a few KRX stocks whose
prices move by a deterministic random walk (on the KRX tick grid), so the
demo streams trades and fills without a network."""

from __future__ import annotations

import random
import threading
from decimal import Decimal

from brokers.kis import protocol
from brokers.kis.fake.server import FakeKisServer

# The demo's KIS paper account (also used by the demo set-up that creates the account).
DEMO_APP_KEY = "demo-kis-app-key"
DEMO_APP_SECRET = "demo-kis-app-secret"  # noqa: S105 - a fake server's demo credential
DEMO_CANO = "50000000"
DEMO_PRODUCT_CODE = "01"
DEMO_HTS_ID = "demo"
DEMO_CASH_KRW = Decimal("100000000")
DEMO_STOCKS = {  # code -> (name, starting price)
    "005930": ("Samsung Electronics", 71_000),
    "000660": ("SK hynix", 178_000),
    "035420": ("NAVER", 187_500),
    "035720": ("Kakao", 41_950),
    "005380": ("Hyundai Motor", 243_500),
}


def demo_seed(fake: FakeKisServer) -> None:
    fake.add_account(
        DEMO_APP_KEY,
        DEMO_APP_SECRET,
        DEMO_CANO,
        product_code=DEMO_PRODUCT_CODE,
        hts_id=DEMO_HTS_ID,
        cash_krw=DEMO_CASH_KRW,
        environment="paper",
    )
    for code, (name, price) in DEMO_STOCKS.items():
        fake.set_price(code, price, name=name)
    fake.add_holding(DEMO_CANO, "005930", 10, 68_000, DEMO_STOCKS["005930"][0])


def next_price(rng: random.Random, price: Decimal) -> Decimal:
    """One step of the walk: up or down a few ticks, staying on the grid."""
    tick = protocol.krx_tick_size(price)
    moved = price + tick * rng.choice((-2, -1, -1, 0, 1, 1, 2))
    tick = protocol.krx_tick_size(moved)
    return max(Decimal(tick), moved - moved % tick)


def demo_walk(fake: FakeKisServer, stop: threading.Event, *, interval: float = 1.0, seed: int = 9) -> None:
    """Move every demo price once per ``interval`` until ``stop`` is set."""
    rng = random.Random(seed)  # noqa: S311 - a demo walk, not a secret
    with fake.exchange.lock:  # from where they are (a restored state), else from the start
        prices = {
            code: fake.exchange.quotes[code].price if code in fake.exchange.quotes else Decimal(price)
            for code, (_, price) in DEMO_STOCKS.items()
        }
    while not stop.wait(interval):
        for code in DEMO_STOCKS:
            prices[code] = next_price(rng, prices[code])
            fake.set_price(code, prices[code])
