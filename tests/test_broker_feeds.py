"""Broker feeds in marketdata: a registered provider's ticks become quotes,
1-minute bars and stream events exactly like simulated ticks; each
instrument has one quote source."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer

from brokers.locks import lease_acquire
from marketdata.feeds.base import Feed
from marketdata.feeds.registry import (
    PushFeed,
    broker_feeds_status,
    broker_feeds_step,
    register_feed_provider,
    runtime_reset,
    unregister_feed_provider,
)
from marketdata.models import Bar
from marketdata.quotes import quote_get, quotes_forget
from marketdata.services import bars_upsert_many, instrument_upsert
from marketdata.simulation import sim_instruments
from marketdata.streaming import subscribers_add
from marketdata.types import Bar as BarData
from marketdata.types import Quote, Tick
from streams.publish import group_for

SYMBOL = "KRX:005930"
ROOT = Path(__file__).resolve().parent.parent


class OneFeedProvider:
    """A provider with one push feed: what a broker package registers."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.feed = PushFeed(f"{name}:0", max_ticks=5)
        self.stopped = False

    def feeds(self) -> list[Feed]:
        return [self.feed]

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def krx(db):
    instrument = instrument_upsert(
        symbol=SYMBOL,
        description="Samsung Electronics",
        exchange="KRX",
        type="stock",
        currency="KRW",
        tick_size=Decimal("100"),
        session="24x7",
        timezone="Asia/Seoul",
        sim_params={"price": 70000.0},  # would be simulated, were its source the simulator
    )
    instrument.venue, instrument.code, instrument.quote_source = "KRX", "005930", "kis"
    instrument.save(update_fields=["venue", "code", "quote_source"])
    return instrument


@pytest.fixture
def provider(krx) -> Iterator[OneFeedProvider]:
    runtime_reset()
    quotes_forget([SYMBOL])
    provider = OneFeedProvider("test-kis", "kis")
    register_feed_provider(provider)
    yield provider
    runtime_reset()
    unregister_feed_provider(provider.name)


def _minute() -> int:
    now = int(time.time())
    return now - now % 60 - 120  # two minutes ago: both test minutes are in the past


def test_broker_ticks_become_a_quote_bars_and_a_quotes_stream_event(provider, settings):
    settings.QUOTE_THROTTLE_INTERVAL = 0.0
    minute = _minute()
    ticks = [
        Tick(SYMBOL, minute + 1, Decimal(70000), Decimal(10)),
        Tick(SYMBOL, minute + 20, Decimal(70300), Decimal(5)),
        Tick(SYMBOL, minute + 40, Decimal(69900), Decimal(7)),
        Tick(SYMBOL, minute + 61, Decimal(70100), Decimal(3)),  # the next minute: the first bar is complete
    ]
    quote = Quote(symbol=SYMBOL, time=minute + 61, last=Decimal(70100), bid=Decimal(70000), ask=Decimal(70100), prev_close=Decimal(69000))
    provider.feed.push(ticks, [quote])
    subscribers_add(f"quotes:{SYMBOL}", 1)
    layer = get_channel_layer()

    async def scenario() -> list[dict]:
        channel = await layer.new_channel()
        await layer.group_add(group_for(f"quotes:{SYMBOL}"), channel)
        quotes, count = await sync_to_async(broker_feeds_step)()
        assert count == 4 and [q.symbol for q in quotes] == [SYMBOL]
        received = []
        while True:
            try:
                received.append(json.loads((await asyncio.wait_for(layer.receive(channel), 0.5))["frame"]))
            except TimeoutError:
                return received

    frames = async_to_sync(scenario)()
    assert [f["data"]["last"] for f in frames if f["type"] == "update"] == ["70100"]
    stored = quote_get(SYMBOL)
    assert stored is not None and stored.last == Decimal(70100) and stored.change == Decimal(1100)
    bars = list(
        Bar.objects.filter(instrument__symbol=SYMBOL, resolution="1")
        .order_by("time")
        .values_list("time", "open", "high", "low", "close", "volume")
    )
    assert [(b[0], *map(Decimal, b[1:])) for b in bars] == [
        (datetime.fromtimestamp(minute, UTC), Decimal(70000), Decimal(70300), Decimal(69900), Decimal(69900), Decimal(22)),
        (datetime.fromtimestamp(minute + 60, UTC), Decimal(70100), Decimal(70100), Decimal(70100), Decimal(70100), Decimal(3)),
    ]
    status = {s["name"]: s for s in broker_feeds_status()}["test-kis"]
    assert status["feeds"] == 1 and status["last_tick_time"] is not None and status["dropped"] == 0


def test_a_minute_begun_before_a_restart_is_continued_not_replaced(provider, krx):
    minute = _minute()
    # What another process (or this one before a restart) stored of the minute.
    bars_upsert_many(
        resolution="1", bars=[(krx.pk, BarData(minute, Decimal(70000), Decimal(70800), Decimal(69500), Decimal(70100), Decimal(40)))]
    )
    provider.feed.push([Tick(SYMBOL, minute + 50, Decimal(70200), Decimal(2)), Tick(SYMBOL, minute + 55, Decimal(69400), Decimal(3))])
    broker_feeds_step()
    bar = Bar.objects.get(instrument=krx, resolution="1", time=datetime.fromtimestamp(minute, UTC))
    assert [Decimal(v) for v in (bar.open, bar.high, bar.low, bar.close, bar.volume)] == [70000, 70800, 69400, 69400, 45]


def test_the_simulator_leaves_an_instrument_quoted_by_a_broker_alone(krx):
    assert SYMBOL not in {i.symbol for i in sim_instruments()}
    krx.quote_source = "simulator"
    krx.save(update_fields=["quote_source"])
    assert SYMBOL in {i.symbol for i in sim_instruments()}


def test_a_feed_cannot_quote_an_instrument_of_another_source(provider, alice_api):
    instrument_upsert(symbol="SIM:OTHER", type="stock", tick_size=Decimal("0.01"), session="24x7", sim_params={"price": 10.0})
    minute = _minute()
    provider.feed.push(
        [Tick("SIM:OTHER", minute + 1, Decimal(11), Decimal(1))], [Quote(symbol="SIM:OTHER", time=minute + 1, last=Decimal(11))]
    )
    assert broker_feeds_step() == ([], 0)
    assert not Bar.objects.filter(instrument__symbol="SIM:OTHER").exists()
    status = {s["name"]: s for s in broker_feeds_status()}["test-kis"]
    assert status["refused"] == 2
    health = alice_api.get("/api/v1/datafeed/health").json()
    listed = {f["name"]: f for f in health["feeds"]}["test-kis"]
    assert listed["refused"] == 2 and listed["dropped"] == 0 and listed["stale"] is False


def test_a_push_feed_over_its_bound_drops_the_oldest_ticks_and_counts_them(provider):
    minute = _minute()
    provider.feed.push([Tick(SYMBOL, minute + n, Decimal(70000 + 100 * n), Decimal(1)) for n in range(8)])
    assert provider.feed.dropped == 3 and provider.feed.pending() == 5
    _, count = broker_feeds_step()
    assert count == 5
    bar = Bar.objects.get(instrument__symbol=SYMBOL, resolution="1")
    assert Decimal(bar.open) == Decimal(70300) and Decimal(bar.volume) == 5  # the three oldest were dropped
    assert {s["name"]: s for s in broker_feeds_status()}["test-kis"]["dropped"] == 3


def test_stopping_the_loops_stops_the_providers(provider):
    from core import loops
    from marketdata.feeds.registry import BROKER_FEEDS_LOOP

    loop = loops.registered_loops()[BROKER_FEEDS_LOOP]
    assert loop.on_stop is not None
    loop.on_stop()
    assert provider.stopped


# --- the lease a feed connection is held under --------------------------------------------


def _other_process_acquires(name: str) -> bool:
    """Whether a fresh process gets the lease ``name`` (a second market-data process)."""
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup(); "
        "from brokers.locks import lease_acquire; "
        f"print('got' if lease_acquire({name!r}, ttl=5) else 'refused')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)  # noqa: S603
    answer = result.stdout.strip().rpartition("\n")[2]
    assert result.returncode == 0 and answer in ("got", "refused"), (result.returncode, result.stdout[-500:], result.stderr[-2000:])
    return answer == "got"


def test_a_lease_is_held_once_across_threads_and_processes_until_released():
    name = f"test-feed-{time.time_ns()}"
    lease = lease_acquire(name, ttl=5)
    assert lease is not None and lease.renew()
    try:
        assert lease_acquire(name, ttl=5) is None  # another thread or provider of this process
        assert not _other_process_acquires(name)
    finally:
        lease.release()
    assert not lease.renew()  # released: no longer held
    again = lease_acquire(name, ttl=5)
    assert again is not None
    again.release()
    assert _other_process_acquires(name)  # and the process exiting freed it


def test_a_lease_taken_in_one_thread_is_renewed_and_released_from_another():
    """The feed takes its connection lease on one thread and renews it from the loop's."""
    name = f"test-feed-{time.time_ns()}"
    taken: list = []
    taker = threading.Thread(target=lambda: taken.append(lease_acquire(name, ttl=5)))
    taker.start()
    taker.join()
    lease = taken[0]
    assert lease is not None
    assert lease.renew() and lease.held
    lease.release()
    assert _other_process_acquires(name)  # freed: another process takes it at once
