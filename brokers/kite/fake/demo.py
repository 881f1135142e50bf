"""The fake Kite's demo: one app of one Kite user, a few NSE stocks and the
NIFTY 50 index, prices that walk a tick or two at a time (``manage.py
run_fake_kite --walk 1``, what ``make run`` starts with DEMO_FAKE_BROKERS).
The terminal imports the same instruments (``brokers.demo``)."""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal

from brokers.kite.fake.exchange import KiteError
from brokers.kite.fake.server import FakeKiteServer
from brokers.kite.fake.ticker import FakeKiteTicker

DEMO_API_KEY = "kitedemoapikey"
DEMO_API_SECRET = "kite-demo-api-secret"  # noqa: S105 - the fake's demo app, not a secret
DEMO_USER_ID = "DM1234"
DEMO_CASH = Decimal(1_000_000)

# (instrument_token, exchange, tradingsymbol, name, price, tick size, segment): Kite's real tokens.
DEMO_INSTRUMENTS: tuple[tuple[int, str, str, str, Decimal, Decimal, str], ...] = (
    (408065, "NSE", "INFY", "INFOSYS", Decimal(1500), Decimal("0.05"), "NSE"),
    (738561, "NSE", "RELIANCE", "RELIANCE INDUSTRIES", Decimal(2900), Decimal("0.05"), "NSE"),
    (256265, "NSE", "NIFTY 50", "NIFTY 50", Decimal(24000), Decimal(0), "INDICES"),
)


def demo_fake_kite_set_up(fake: FakeKiteServer, ticker: FakeKiteTicker | None = None, *, redirect_url: str = "") -> None:
    """The demo app, user and instruments on ``fake``; ``ticker`` (if any,
    made with ``session_authenticator(fake)``) streams its prices and its
    order updates."""
    from brokers.kite.fake import Instrument

    fake.add_app(DEMO_API_KEY, DEMO_API_SECRET, DEMO_USER_ID, redirect_url=redirect_url, cash=DEMO_CASH)
    for token, exchange, symbol, name, price, tick, segment in DEMO_INSTRUMENTS:
        fake.add_instrument(Instrument(token, exchange, symbol, name=name, last_price=price, tick_size=tick, segment=segment))
    if ticker is None:
        return
    fake.order_listeners.append(ticker.order_update)
    for token, *_rest, price, _tick, _segment in DEMO_INSTRUMENTS:
        ticker.tick(token, last_price=price, open=price, high=price, low=price, close=price)


def session_authenticator(fake: FakeKiteServer) -> Callable[[str, str], str | None]:
    """The ticker's check of a handshake: a session ``fake`` issued (its user), else None."""

    def user_of(api_key: str, access_token: str) -> str | None:
        try:
            return fake.exchange.app_of(api_key, access_token).user_id
        except KiteError:
            return None

    return user_of


def demo_price_step(fake: FakeKiteServer, ticker: FakeKiteTicker | None, rng: random.Random) -> None:
    """Every demo stock moves -2..+2 ticks (the index follows its own walk): the
    fake matches resting orders on the new price and the ticker sends it."""
    for token, exchange, symbol, _name, _price, tick, _segment in DEMO_INSTRUMENTS:
        inst = fake.exchange.instruments[token]
        step = tick if tick > 0 else Decimal("0.05")
        price = max(step, inst.last_price + step * rng.randint(-2, 2))
        fake.set_price(exchange, symbol, price)
        if ticker is not None:
            state = ticker.instruments.get(token)
            volume = (state.volume if state else 0) + rng.randint(1, 50) * 10
            high = max(price, state.high) if state and state.high else price
            low = min(price, state.low) if state and state.low else price
            ticker.tick(token, last_price=price, volume=volume, high=high, low=low, last_quantity=10)
