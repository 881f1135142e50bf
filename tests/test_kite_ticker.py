"""The Kite ticker's wire format: every packet kind parsed as PROTOCOLS.md
packs it, malformed frames skipped and counted (never raised), and the fake
ticker speaking it over a real WebSocket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import struct
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from brokers.kite.fake.ticker import HEARTBEAT, FakeKiteTicker, InstrumentState, pack_frame, pack_packet
from brokers.kite.ticker import (
    MODE_FULL,
    MODE_LTP,
    MODE_QUOTE,
    mode_message,
    parse_binary,
    parse_packet,
    parse_text,
    subscribe_message,
    unsubscribe_message,
)

INFY = 408065  # NSE (segment 1)
NIFTY = 256265  # an index (segment 9)
USDINR = 412675  # CDS (segment 3)
BCD = (1000 << 8) | 6  # BSE currency (segment 6)


def full_infy() -> InstrumentState:
    return InstrumentState(
        INFY,
        last_price=Decimal("1523.45"),
        last_quantity=7,
        average_price=Decimal("1520.10"),
        volume=1_234_567,
        buy_quantity=5000,
        sell_quantity=6000,
        open=Decimal("1510"),
        high=Decimal("1530.5"),
        low=Decimal("1505.05"),
        close=Decimal("1500"),
        last_trade_time=1_765_000_000,
        oi=0,
        oi_day_high=0,
        oi_day_low=0,
        exchange_timestamp=1_765_000_001,
        bids=[(Decimal("1523.40"), 10, 2), (Decimal("1523.35"), 20, 3)],
        asks=[(Decimal("1523.50"), 11, 1), (Decimal("1523.55"), 21, 4), (Decimal("1523.60"), 31, 5)],
    )


# --- the parser ---------------------------------------------------------------------------------


def test_an_ltp_packet_is_the_token_and_the_last_price_in_paise() -> None:
    packet = struct.pack(">Ii", INFY, 152345)
    tick = parse_packet(packet)
    assert tick is not None
    assert (tick.instrument_token, tick.mode, tick.last_price, tick.tradable) == (INFY, MODE_LTP, Decimal("1523.45"), True)
    assert tick.volume is None and tick.bids == ()


def test_a_quote_packet_carries_the_44_bytes_fields_in_order() -> None:
    packet = struct.pack(">IiIiIIIiiii", INFY, 152345, 7, 152010, 1_234_567, 5000, 6000, 151000, 153050, 150505, 150000)
    assert len(packet) == 44
    tick = parse_packet(packet)
    assert tick is not None and tick.mode == MODE_QUOTE
    assert (tick.last_price, tick.last_quantity, tick.average_price, tick.volume) == (Decimal("1523.45"), 7, Decimal("1520.10"), 1_234_567)
    assert (tick.buy_quantity, tick.sell_quantity) == (5000, 6000)
    assert (tick.open, tick.high, tick.low, tick.close) == (Decimal("1510.00"), Decimal("1530.50"), Decimal("1505.05"), Decimal("1500.00"))
    assert tick.oi is None and tick.bids == ()


def test_a_full_packet_carries_oi_times_and_five_levels_each_side() -> None:
    packet = pack_packet(full_infy(), MODE_FULL)
    assert len(packet) == 184
    # the depth as documented: 5 bids then 5 asks of (qty int32, price int32, orders uint16, 2 pad)
    assert struct.unpack_from(">IiH", packet, 64) == (10, 152340, 2)
    assert struct.unpack_from(">IiH", packet, 64 + 5 * 12) == (11, 152350, 1)
    tick = parse_packet(packet)
    assert tick is not None and tick.mode == MODE_FULL
    assert (tick.last_trade_time, tick.exchange_timestamp) == (1_765_000_000, 1_765_000_001)
    assert [(b.price, b.quantity, b.orders) for b in tick.bids[:2]] == [(Decimal("1523.40"), 10, 2), (Decimal("1523.35"), 20, 3)]
    assert [(a.price, a.quantity) for a in tick.asks[:3]] == [(Decimal("1523.50"), 11), (Decimal("1523.55"), 21), (Decimal("1523.60"), 31)]
    assert len(tick.bids) == len(tick.asks) == 5
    assert tick.bids[4].quantity == 0  # empty levels are zeros on the wire


def test_full_packets_carry_open_interest_of_derivatives() -> None:
    state = InstrumentState((12345 << 8) | 2, last_price=Decimal("24010.5"), oi=1_500_000, oi_day_high=1_600_000, oi_day_low=1_400_000)
    tick = parse_packet(pack_packet(state, MODE_FULL))
    assert tick is not None and (tick.oi, tick.oi_day_high, tick.oi_day_low) == (1_500_000, 1_600_000, 1_400_000)


def test_index_packets_of_28_and_32_bytes() -> None:
    index = InstrumentState(
        NIFTY, last_price=Decimal("24100.55"), high=Decimal("24200"), low=Decimal("23950.25"), open=Decimal("24000"), close=Decimal("23990")
    )
    index.exchange_timestamp = 1_765_000_002
    quote = pack_packet(index, MODE_QUOTE)
    full = pack_packet(index, MODE_FULL)
    assert (len(quote), len(full)) == (28, 32)
    # token, ltp, high, low, open, close (as documented), then the net change
    assert struct.unpack(">Iiiiii", quote[:24]) == (NIFTY, 2410055, 2420000, 2395025, 2400000, 2399000)
    q, f = parse_packet(quote), parse_packet(full)
    assert q is not None and f is not None
    assert (q.mode, q.tradable, q.last_price, q.high, q.low, q.open, q.close) == (
        MODE_QUOTE,
        False,
        Decimal("24100.55"),
        Decimal("24200.00"),
        Decimal("23950.25"),
        Decimal("24000.00"),
        Decimal("23990.00"),
    )
    assert q.exchange_timestamp is None
    assert (f.mode, f.exchange_timestamp) == (MODE_FULL, 1_765_000_002)


def test_currency_segment_prices_divide_by_ten_million_and_bcd_by_ten_thousand() -> None:
    cds = parse_packet(struct.pack(">Ii", USDINR, 835_012_500))
    bcd = parse_packet(struct.pack(">Ii", BCD, 835_025))
    assert cds is not None and cds.last_price == Decimal("83.50125")
    assert bcd is not None and bcd.last_price == Decimal("83.5025")


def test_a_frame_of_several_packets_and_a_heartbeat() -> None:
    frame = pack_frame([pack_packet(full_infy(), MODE_FULL), struct.pack(">Ii", NIFTY, 2410055), pack_packet(full_infy(), MODE_QUOTE)])
    parsed = parse_binary(frame)
    assert [t.mode for t in parsed.ticks] == [MODE_FULL, MODE_LTP, MODE_QUOTE]
    assert parsed.malformed == 0 and not parsed.heartbeat
    beat = parse_binary(HEARTBEAT)
    assert beat.heartbeat and beat.ticks == [] and beat.malformed == 0


@pytest.mark.parametrize(
    ("frame", "good", "malformed"),
    [
        (b"", 0, 1),  # empty
        (struct.pack(">H", 2) + struct.pack(">H", 8) + struct.pack(">Ii", INFY, 1), 1, 1),  # the count names a packet not there
        (struct.pack(">HH", 1, 8) + b"\x00\x01\x02", 0, 1),  # a packet cut short
        (struct.pack(">HH", 1, 184) + pack_packet(full_infy(), MODE_FULL)[:100], 0, 1),  # truncated depth
        (pack_frame([b"\x00" * 12, struct.pack(">Ii", INFY, 100)]), 1, 1),  # an unknown length, then a good packet
        (pack_frame([pack_packet(full_infy(), MODE_FULL)[:120]]), 0, 1),  # a full packet without its depth: no such kind
        (pack_frame([struct.pack(">Ii", INFY, 100)]) + b"\xff\xff", 1, 1),  # bytes past the count
        (struct.pack(">H", 0xFFFF), 0, 1),  # a huge count, nothing behind it
        (b"\x00\x01\xff", 0, 1),
    ],
)
def test_malformed_frames_are_skipped_and_counted_never_raised(frame: bytes, good: int, malformed: int) -> None:
    parsed = parse_binary(frame)
    assert (len(parsed.ticks), parsed.malformed) == (good, malformed)


def test_random_bytes_never_raise() -> None:
    import random

    rng = random.Random(11)
    for _ in range(2000):
        frame = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        parse_binary(frame)  # no exception is the assertion


def test_text_frames_order_updates_errors_and_junk() -> None:
    order = parse_text(json.dumps({"type": "order", "data": {"order_id": "2301", "status": "COMPLETE"}}))
    assert order is not None and order.type == "order" and order.data["status"] == "COMPLETE"
    error = parse_text('{"type": "error", "data": "Invalid token"}')
    assert error is not None and (error.type, error.data) == ("error", "Invalid token")
    assert parse_text('{"type": "message", "data": "hi"}') is not None
    for junk in ("not json", "[]", '{"data": 1}', '{"type": "order", "data": "x"}', '{"type": "order", "data": {}}', "[" * 100_000):
        assert parse_text(junk) is None


def test_request_messages() -> None:
    assert json.loads(subscribe_message([1, 2])) == {"a": "subscribe", "v": [1, 2]}
    assert json.loads(unsubscribe_message([2])) == {"a": "unsubscribe", "v": [2]}
    assert json.loads(mode_message("full", [1])) == {"a": "mode", "v": ["full", [1]]}
    with pytest.raises(ValueError, match="mode"):
        mode_message("everything", [1])


# --- the fake ticker over a real socket -----------------------------------------------------


async def _frames(ws: Any, want: int, *, binary_only: bool = True, timeout: float = 5.0) -> list[Any]:
    out: list[Any] = []
    async with asyncio.timeout(timeout):
        while len(out) < want:
            message = await ws.recv()
            if binary_only and (not isinstance(message, bytes) or len(message) == 1):
                continue
            out.append(message)
    return out


def test_the_fake_refuses_unknown_credentials_with_403() -> None:
    async def scenario(url: str) -> int:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url + "?api_key=k&access_token=wrong", open_timeout=5):
                pass
        return refused.value.response.status_code

    with FakeKiteTicker() as ticker:
        ticker.allow("k", "good", "AB1234")
        assert asyncio.run(scenario(ticker.url)) == 403
        assert ticker.refused == 1


def test_the_fake_sends_packets_in_the_subscribed_mode_heartbeats_and_order_updates() -> None:
    async def scenario(ticker: FakeKiteTicker) -> dict[str, Any]:
        async with connect(ticker.url + "?api_key=k&access_token=good", open_timeout=5) as ws:
            await ws.send(subscribe_message([INFY]))
            first = await _frames(ws, 1)  # the latest packet at once, in quote mode
            await ws.send(mode_message("full", [INFY]))
            second = await _frames(ws, 1)
            ticker.tick(INFY, last_price=Decimal("1524.00"), volume=1_234_600)
            third = await _frames(ws, 1)
            ticker.order_update({"order_id": "2301", "status": "OPEN", "user_id": "AB1234"})
            ticker.order_update({"order_id": "9999", "status": "OPEN", "user_id": "SOMEONE"})  # not this user's
            ticker.heartbeat_interval = 0.05
            texts, beats = [], 0
            async with asyncio.timeout(5):
                while beats < 2:
                    message = await ws.recv()
                    if message == HEARTBEAT:
                        beats += 1
                    elif isinstance(message, str):
                        texts.append(json.loads(message))
            return {"first": first, "second": second, "third": third, "texts": texts}

    with FakeKiteTicker() as ticker:
        ticker.allow("k", "good", "AB1234")
        ticker.tick(INFY, **{k: v for k, v in vars(full_infy()).items() if k != "token"})
        got = asyncio.run(scenario(ticker))
    assert [t.mode for t in parse_binary(got["first"][0]).ticks] == [MODE_QUOTE]
    assert [t.mode for t in parse_binary(got["second"][0]).ticks] == [MODE_FULL]
    third = parse_binary(got["third"][0]).ticks[0]
    assert (third.last_price, third.volume, third.mode) == (Decimal("1524.00"), 1_234_600, MODE_FULL)
    assert got["texts"] == [{"type": "order", "data": {"order_id": "2301", "status": "OPEN", "user_id": "AB1234"}}]


def test_the_fake_refuses_more_than_3000_instruments_per_connection() -> None:
    async def scenario(ticker: FakeKiteTicker) -> tuple[Any, Any]:
        async with connect(ticker.url + "?api_key=k&access_token=good", open_timeout=5) as ws:
            await ws.send(subscribe_message(list(range(1, 3001))))
            await ws.send(subscribe_message([3001]))
            error = json.loads((await _frames(ws, 1, binary_only=False))[0])
            return error, ticker.subscriptions()

    with FakeKiteTicker() as ticker:
        ticker.heartbeat_interval = 0
        ticker.allow("k", "good", "AB1234")
        error, subs = asyncio.run(scenario(ticker))
    assert error["type"] == "error" and "3000" in error["data"]
    assert len(subs[0]) == 3000 and 3001 not in subs[0]
