"""Paper matching core in process, no database: N seeded random orders
(market and limit, both sides, a few day/ioc) against a moving quote.

Measures orders per second over the whole run (submits plus the quote
matching between them) and the latency of each ``submit`` (perf_counter_ns),
five runs, medians reported. Prints the figures and writes them as JSON.
Wall-clock figures suffer when other processes share the CPUs: the process
CPU time and the load average are recorded beside them to tell.

    .venv/bin/python bench/paper_engine_bench.py [--orders 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from brokers.base import OrderRequest  # noqa: E402
from brokers.paper.book import EngineConfig, FillEvent, InstrumentSpec, StatusEvent  # noqa: E402
from brokers.paper.engine import PaperEngine  # noqa: E402
from marketdata.types import Quote  # noqa: E402

GOAL_ORDERS_PER_S = 20_000
SYMBOL = "BENCH"
TICK = Decimal("0.01")


def _percentile(sorted_values: list[int], fraction: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def run_once(n_orders: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    config = EngineConfig(
        fee_bps=Decimal(1),
        min_fee=Decimal(0),
        slippage_bps=Decimal(2),
        stale_seconds=10.0,
        margin_rates={"stock": Decimal(1), "future": Decimal("0.1")},
    )
    engine = PaperEngine(config, cash=Decimal(10_000_000_000))
    spec = InstrumentSpec(symbol=SYMBOL, type="stock", tick_size=TICK, lot_size=Decimal(1), multiplier=Decimal(1))
    mid_ticks = 10_000  # 100.00
    now = 1_700_000_000.0
    quote = None
    latencies: list[int] = []
    fills = rejected = 0
    perf = time.perf_counter_ns
    cpu_started = time.process_time()
    started = perf()
    for i in range(n_orders):
        if i % 10 == 0:
            # The quote moves every ten orders; working orders match on it.
            mid_ticks = max(100, mid_ticks + rng.choice((-3, -2, -1, 0, 1, 2, 3)))
            now += 0.1
            quote = Quote(
                symbol=SYMBOL,
                time=now,
                last=mid_ticks * TICK,
                bid=(mid_ticks - 1) * TICK,
                ask=(mid_ticks + 1) * TICK,
                bid_size=Decimal(rng.randint(1, 60)),
                ask_size=Decimal(rng.randint(1, 60)),
            )
            for event in engine.on_quote(quote, now):
                fills += isinstance(event, FillEvent)
        side = "buy" if rng.random() < 0.5 else "sell"
        roll = rng.random()
        tif = "ioc" if roll < 0.05 else ("day" if roll < 0.25 else "gtc")
        if rng.random() < 0.5:
            request = OrderRequest(
                client_order_id=f"b{i}", symbol=SYMBOL, side=side, order_type="market", qty=Decimal(rng.randint(1, 20)), time_in_force=tif
            )
        else:
            offset = rng.randint(-5, 15)  # mostly passive, some marketable
            limit_ticks = mid_ticks - offset if side == "buy" else mid_ticks + offset
            request = OrderRequest(
                client_order_id=f"b{i}",
                symbol=SYMBOL,
                side=side,
                order_type="limit",
                qty=Decimal(rng.randint(1, 20)),
                price=max(1, limit_ticks) * TICK,
                time_in_force=tif,
            )
        t0 = perf()
        events = engine.submit(request, quote, spec, now)
        latencies.append(perf() - t0)
        for event in events:
            if isinstance(event, FillEvent):
                fills += 1
            elif isinstance(event, StatusEvent) and event.status == "rejected":
                rejected += 1
    elapsed_ns = perf() - started
    cpu_s = time.process_time() - cpu_started
    engine.check_invariants()
    latencies.sort()
    return {
        "orders_per_s": n_orders / (elapsed_ns / 1e9),
        "orders_per_cpu_s": n_orders / cpu_s,
        "submit_only_orders_per_s": n_orders / (sum(latencies) / 1e9),
        "p50_us": _percentile(latencies, 0.50) / 1000,
        "p99_us": _percentile(latencies, 0.99) / 1000,
        "max_us": latencies[-1] / 1000,
        "fills": fills,
        "rejected": rejected,
        "working_at_end": len(engine.working_orders()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "paper_engine.json")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    runs = [run_once(args.orders, args.seed) for _ in range(args.runs)]
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    result = {
        "benchmark": "paper_engine",
        "orders": args.orders,
        "runs": args.runs,
        "seed": args.seed,
        "goal_orders_per_s": GOAL_ORDERS_PER_S,
        "median": {k: round(v, 2) for k, v in median.items()},
        "meets_goal": median["orders_per_s"] >= GOAL_ORDERS_PER_S,
        "each_run": [{k: round(v, 2) for k, v in run.items()} for run in runs],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    m = result["median"]
    print(
        f"paper engine: {args.orders} orders x {args.runs} runs (medians): "
        f"{m['orders_per_s']:,.0f} orders/s (goal {GOAL_ORDERS_PER_S:,}; {m['orders_per_cpu_s']:,.0f} per CPU second), "
        f"submit p50 {m['p50_us']:.1f} us, p99 {m['p99_us']:.1f} us; "
        f"{m['fills']:.0f} fills, {m['rejected']:.0f} rejected"
    )
    print(f"load average {result['load_average_before']} -> {result['load_average_after']} on {os.cpu_count()} CPUs")
    print(f"written to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
