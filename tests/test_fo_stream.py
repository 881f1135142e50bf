"""The ``chain:<underlying>:<expiry>`` stream: parsed at the last colon, a
snapshot through the gateway, updates only while subscribed, throttled."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import date
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connections

from core.exceptions import InvalidInput
from marketdata.fo.stream import ChainBroadcaster, split_chain_channel
from marketdata.models import Instrument
from marketdata.quotes import quotes_forget, quotes_store
from marketdata.simulation import demo_instruments_ensure, simulated_quotes
from marketdata.streaming import subscribers_add
from marketdata.types import Quote
from streams.publish import group_for
from streams.routing import websocket_urlpatterns


def test_the_channel_is_split_at_the_last_colon():
    assert split_chain_channel("chain:NSE:NIFTY:2026-12-31") == ("NSE:NIFTY", date(2026, 12, 31))
    assert split_chain_channel("chain:AAPL:2026-01-16") == ("AAPL", date(2026, 1, 16))
    for bad in ("chain:", "chain:AAPL", "chain::2026-01-16", "chain:AAPL:16/01/2026", "chain:AAPL:2026-02-30"):
        with pytest.raises(InvalidInput):
            split_chain_channel(bad)


@pytest.fixture
def demo_chain(settings):
    settings.SIMULATOR_ENABLED = False
    now = time.time()
    demo_instruments_ensure(now=now)
    symbols = list(Instrument.objects.values_list("symbol", flat=True))
    quotes_store(simulated_quotes(symbols, now=now).values())
    expiry = Instrument.objects.filter(type="option").first().expiry
    yield {"now": now, "channel": f"chain:DEMO:IDX:{expiry.isoformat()}", "symbols": symbols}
    quotes_forget(symbols)


@pytest.mark.django_db(transaction=True)
def test_a_subscriber_gets_the_chain_snapshot_through_the_gateway(demo_chain, alice_key):
    async def scenario():
        comm = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), "/api/v1/ws", headers=[(b"host", b"testserver"), (b"x-api-key", alice_key.encode())]
        )
        connected, _ = await comm.connect(timeout=10)
        assert connected
        frames = []
        try:
            for channel in (demo_chain["channel"], "chain:DEMO:IDX:2020-01-30", "chain:DEMO:IDX"):
                await comm.send_json_to({"op": "subscribe", "channel": channel, "request_id": channel})
                while True:
                    frame = await comm.receive_json_from(timeout=30)
                    if frame["type"] in ("snapshot", "error"):
                        frames.append(frame)
                        break
        finally:
            await comm.disconnect()
            await database_sync_to_async(connections.close_all)()
        return frames

    snapshot, unknown, malformed = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert snapshot["type"] == "snapshot" and snapshot["channel"] == demo_chain["channel"]
    data = snapshot["data"]
    assert data["underlying"] == "DEMO:IDX" and len(data["strikes"]) == 11 and data["atm_iv"] > 0
    assert unknown["type"] == "error" and unknown["data"]["error"]["code"] == "unknown_expiry"
    assert malformed["type"] == "error" and malformed["data"]["error"]["code"] == "unknown_channel"


@pytest.mark.django_db
def test_updates_only_while_subscribed_and_throttled(demo_chain, settings):
    settings.FO_CHAIN_STREAM_INTERVAL = 0.5
    channel = demo_chain["channel"]
    broadcaster = ChainBroadcaster()
    layer = get_channel_layer()
    now = demo_chain["now"]
    index_quote = simulated_quotes(["DEMO:IDX"], now=now)["DEMO:IDX"]

    def moved(seconds: float) -> list[Quote]:
        quote = Quote(symbol="DEMO:IDX", time=now + seconds, last=index_quote.last + Decimal(str(seconds)))
        quotes_store([quote])
        return [quote]

    async def scenario():
        inbox = await layer.new_channel()
        await layer.group_add(group_for(channel), inbox)
        sent = [await sync_to_async(broadcaster.update)(moved(1), now=now + 1)]  # nobody subscribes: nothing computed
        await sync_to_async(subscribers_add)(channel, 1)
        try:
            sent.append(await sync_to_async(broadcaster.update)(moved(2), now=now + 2))  # sent at once
            sent.append(await sync_to_async(broadcaster.update)(moved(2.1), now=now + 2.1))  # inside the window: held
            sent.append(
                await sync_to_async(broadcaster.update)([Quote(symbol="AAPL", time=now, last=Decimal(1))], now=now + 2.6)
            )  # the held one
            sent.append(
                await sync_to_async(broadcaster.update)([Quote(symbol="AAPL", time=now, last=Decimal(1))], now=now + 3.2)
            )  # not this chain's
        finally:
            await sync_to_async(subscribers_add)(channel, -1)
        received = []
        while True:
            try:
                received.append(await asyncio.wait_for(layer.receive(inbox), 0.5))
            except TimeoutError:
                return sent, received

    sent, received = async_to_sync(scenario)()
    assert sent == [0, 1, 0, 1, 0]
    frames = [json.loads(message["frame"]) for message in received]
    assert [f["channel"] for f in frames] == [channel, channel]
    spots = [Decimal(f["data"]["spot"]) for f in frames]
    assert spots == [index_quote.last + 2, index_quote.last + Decimal("2.1")]  # the latest quote when sent
    assert all(isinstance(row["call"]["iv"], float) for row in frames[1]["data"]["strikes"] if row["call"]["iv"] is not None)
