"""Kite ticker parsing throughput: full-mode packets (184 bytes, 5-level depth)
for 3,000 instruments, packed as the ticker sends them (``uint16`` count,
``uint16`` length + packet; here 500 packets a frame), through

- ``parse``: ``brokers.kite.ticker.parse_binary`` alone;
- ``convert``: parsing plus the feed's packet-to-quote-and-tick conversion
  (``PacketConverter``: Decimal prices, depth into the quote);
- ``store``: all of it plus the push feed's buffer (``PushFeed``, what the
  socket thread fills and the market-data loop drains) and the quote-store
  update (``marketdata.quotes.quotes_store``: the cache, Redis with
  ``REDIS_URL``, else the in-process cache).

Every round moves each instrument's price and volume, so every packet makes
a quote and a tick. Medians over the rounds after one warm-up round.

    .venv/bin/python bench/kite_ticker_bench.py [--instruments 3000] [--rounds 7]
    REDIS_URL=redis://127.0.0.1:6379/7 .venv/bin/python bench/kite_ticker_bench.py

Writes ``bench/results/kite_ticker.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PACKETS_PER_FRAME = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instruments", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from brokers.kite.fake.ticker import InstrumentState, pack_frame, pack_packet
    from brokers.kite.ticker import MODE_FULL, parse_binary
    from brokers.kite.ticker_feed import PacketConverter
    from marketdata.feeds.registry import PushFeed
    from marketdata.quotes import quotes_store

    tokens = [(100_000 + i) << 8 | 1 for i in range(args.instruments)]  # NSE tokens
    symbols = tuple((token, f"NSE:BENCH{i}") for i, token in enumerate(tokens))

    def frames_for(round_no: int) -> list[bytes]:
        now = int(time.time())
        packets = []
        for i, token in enumerate(tokens):
            price = Decimal(1000 + i % 500) + Decimal(round_no) / 20
            state = InstrumentState(
                token,
                last_price=price,
                last_quantity=10,
                average_price=price - 1,
                volume=1_000 + round_no * 100 + i,
                buy_quantity=5000,
                sell_quantity=6000,
                open=price - 2,
                high=price + 3,
                low=price - 4,
                close=price - 5,
                last_trade_time=now,
                oi=100_000 + i,
                oi_day_high=110_000,
                oi_day_low=90_000,
                exchange_timestamp=now,
                bids=[(price - Decimal("0.05") * (k + 1), 10 * (k + 1), k + 1) for k in range(5)],
                asks=[(price + Decimal("0.05") * (k + 1), 11 * (k + 1), k + 2) for k in range(5)],
            )
            packets.append(pack_packet(state, MODE_FULL))
        return [pack_frame(packets[i : i + PACKETS_PER_FRAME]) for i in range(0, len(packets), PACKETS_PER_FRAME)]

    rounds = [frames_for(r) for r in range(args.rounds + 1)]
    converter = PacketConverter()
    converter.set_tokens(symbols)
    feed = PushFeed("bench", max_ticks=args.instruments * 2)

    def parse(frames: list[bytes]) -> int:
        return sum(len(parse_binary(f).ticks) for f in frames)

    def convert(frames: list[bytes]) -> int:
        count = 0
        for frame in frames:
            ticks, quotes = converter.convert(parse_binary(frame).ticks, time.time())
            count += len(quotes)
        return count

    def store(frames: list[bytes]) -> int:
        count = 0
        for frame in frames:
            ticks, quotes = converter.convert(parse_binary(frame).ticks, time.time())
            feed.push(ticks, quotes)
            count += len(quotes)
        batch = feed.poll(time.time())
        quotes_store(batch.quotes)
        return count

    results: dict[str, dict[str, float]] = {}
    for name, step in (("parse", parse), ("convert", convert), ("store", store)):
        samples = []
        for index, frames in enumerate(rounds):
            started = time.perf_counter()
            count = step(frames)
            elapsed = time.perf_counter() - started
            assert count == args.instruments, (name, count)
            if index:  # the first round warms up
                samples.append(elapsed)
        median = statistics.median(samples)
        results[name] = {
            "median_seconds": median,
            "min_seconds": min(samples),
            "max_seconds": max(samples),
            "packets_per_second": args.instruments / median,
        }

    cache_backend = "redis" if os.environ.get("REDIS_URL") else "in-process"
    print(f"Kite ticker: {args.instruments} full-mode packets a round, {args.rounds} rounds, quote store: {cache_backend}")
    print(f"{'step':<10}{'median ms':>12}{'packets/s':>14}")
    for name, row in results.items():
        print(f"{name:<10}{row['median_seconds'] * 1000:>12.1f}{row['packets_per_second']:>14,.0f}")
    out = {
        "instruments": args.instruments,
        "rounds": args.rounds,
        "packets_per_frame": PACKETS_PER_FRAME,
        "packet_bytes": 184,
        "quote_store": cache_backend,
        "results": results,
        "environment": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
    }
    path = ROOT / "bench" / "results" / "kite_ticker.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"written: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
