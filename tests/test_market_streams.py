"""Live market streams: quotes and bars from the running simulator through a
real daphne server, and the per-symbol quote throttle."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest
import websockets
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache

from marketdata.services import instrument_upsert
from marketdata.streaming import Broadcaster, broadcast_stats, subscribers_add
from marketdata.types import Quote
from streams.publish import group_for
from tests.servers import run_daphne


@pytest.fixture
def simulated(db):
    return instrument_upsert(
        symbol="SIM:STREAM",
        type="stock",
        tick_size=Decimal("0.01"),
        session="24x7",
        sim_params={"price": 100.0, "volatility": 0.4, "volume_per_second": 10},
    )


async def _recv(ws, timeout: float = 10.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def _until(ws, kind: str, channel: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        frame = await _recv(ws, max(0.1, deadline - time.monotonic()))
        if frame["type"] == kind and frame.get("channel") == channel:
            return frame


@pytest.mark.django_db(transaction=True)
def test_quotes_and_bars_stream_live_from_the_simulator(simulated, alice_key, tmp_path):
    with run_daphne(tmp_path, SIMULATOR_HISTORY_DAYS="0", SIMULATOR_TICK_INTERVAL="0.25", BAR_BROADCASTER_INTERVAL="0.5") as server:

        async def scenario():
            async with websockets.connect(server.ws_url, additional_headers={"X-API-Key": alice_key}, open_timeout=10) as ws:
                assert (await _recv(ws))["type"] == "hello"
                await ws.send(json.dumps({"op": "subscribe", "channel": "quotes:SIM:STREAM", "request_id": "q"}))
                await ws.send(json.dumps({"op": "bars.subscribe", "symbol": "SIM:STREAM", "resolution": "D", "request_id": "b"}))
                quote_snapshot = await _until(ws, "snapshot", "quotes:SIM:STREAM")
                bar_snapshot = await _until(ws, "snapshot", "bars:SIM:STREAM:1D")
                quote_updates, bar_updates = [], []
                deadline = time.monotonic() + 20
                while (len(quote_updates) < 4 or len(bar_updates) < 2) and time.monotonic() < deadline:
                    frame = await _recv(ws)
                    if frame["type"] == "update" and frame["channel"] == "quotes:SIM:STREAM":
                        quote_updates.append(frame)
                    elif frame["type"] == "update" and frame["channel"] == "bars:SIM:STREAM:1D":
                        bar_updates.append(frame)
                await ws.send(json.dumps({"op": "unsubscribe", "channel": "quotes:SIM:STREAM"}))
                await _until(ws, "unsubscribed", "quotes:SIM:STREAM")
                after = []
                end = time.monotonic() + 1.5
                while time.monotonic() < end:
                    try:
                        frame = await _recv(ws, end - time.monotonic())
                    except TimeoutError:
                        break
                    if frame.get("channel") == "quotes:SIM:STREAM":
                        after.append(frame)
                return quote_snapshot, bar_snapshot, quote_updates, bar_updates, after

        quote_snapshot, bar_snapshot, quote_updates, bar_updates, after = asyncio.run(scenario())

    seqs = [quote_snapshot["seq"]] + [u["seq"] for u in quote_updates]
    assert len(quote_updates) >= 4 and seqs == sorted(set(seqs)), "quote updates must follow the snapshot in order"
    last = quote_updates[-1]["data"]
    assert last["symbol"] == "SIM:STREAM" and Decimal(last["bid"]) < Decimal(last["ask"]) and last["stale"] is False
    assert Decimal(last["last"]) % Decimal("0.01") == 0  # on the tick size
    # Updates arrive no faster than the simulator ticks (the 50 ms throttle is a ceiling).
    stamps = [u["data"]["ts"] for u in quote_updates]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    assert bar_snapshot["channel"] == "bars:SIM:STREAM:1D"  # D is accepted, the canonical name answers
    assert len(bar_updates) >= 2
    bar = bar_updates[-1]["data"]
    assert Decimal(bar["low"]) <= Decimal(bar["close"]) <= Decimal(bar["high"]) and bar["resolution"] == "1D"
    assert not [f for f in after if f["type"] == "update"], "no quote updates after unsubscribe"


@pytest.mark.django_db
def test_quotes_are_throttled_per_symbol_and_the_latest_wins(settings):
    settings.QUOTE_THROTTLE_INTERVAL = 0.2
    cache.clear()
    layer = get_channel_layer()
    broadcaster = Broadcaster()
    subscribers_add("quotes:THR", 1)

    def quote(n: int) -> Quote:
        return Quote(symbol="THR", time=1_000_000 + n, last=Decimal(100 + n))

    async def scenario() -> list[dict]:
        channel = await layer.new_channel()
        await layer.group_add(group_for("quotes:THR"), channel)
        from asgiref.sync import sync_to_async

        start = time.time()
        for n in range(5):  # a burst within one throttle window
            await sync_to_async(broadcaster.quotes_update)([quote(n)], now=start + n * 0.01)
        await sync_to_async(broadcaster.quotes_update)([], now=start + 0.25)  # the next window
        received = []
        while True:
            try:
                received.append(await asyncio.wait_for(layer.receive(channel), 0.3))
            except TimeoutError:
                return received

    received = async_to_sync(scenario)()
    published = [json.loads(message["frame"])["data"]["last"] for message in received]
    assert published == ["100", "104"], "first at once, then only the latest of the burst"
    from marketdata.streaming import counters

    counters.flush()
    stats = broadcast_stats()
    assert stats["broadcasts_sent"] >= 2 and stats["broadcasts_skipped"] >= 4
    assert stats["subscribers"]["quotes"] >= 1


@pytest.mark.django_db
def test_nothing_is_published_for_channels_without_subscribers(settings):
    cache.clear()
    layer = get_channel_layer()
    broadcaster = Broadcaster()

    async def scenario() -> list[dict]:
        channel = await layer.new_channel()
        await layer.group_add(group_for("quotes:LONELY"), channel)
        from asgiref.sync import sync_to_async

        await sync_to_async(broadcaster.quotes_update)([Quote(symbol="LONELY", time=time.time(), last=Decimal(1))])
        try:
            return [await asyncio.wait_for(layer.receive(channel), 0.3)]
        except TimeoutError:
            return []

    assert async_to_sync(scenario)() == []
