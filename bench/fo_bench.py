"""F&O analytics: implied volatility and every Greek over a 200-strike chain
(400 options), vectorised against a per-option Python loop (scipy's brentq
and the scalar pricer), and the latency of GET /api/v1/fo/strike-distribution
for 50 strikes through the whole Django stack.

Rounds interleave the contenders; medians of the rounds are reported side by
side. Prints the figures and writes bench/results/fo.json. The endpoint part
needs PostgreSQL (DATABASE_URL; it uses the database FO_BENCH_DB, default
terminal_bench_fo, created and migrated when missing); without it only the
chain computation is measured.

    .venv/bin/python bench/fo_bench.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from marketdata.analytics.implied import chain_implied_volatility, implied_volatility  # noqa: E402
from marketdata.analytics.pricing import chain_values, option_value  # noqa: E402

GOAL_RATIO = 20.0
SPOT, YEARS, RATE, DIVIDEND = 5000.0, 30 / 365, 0.065, 0.01
STRIKES = 200
ENDPOINT_STRIKES = 50
GREEKS = ("price", "delta", "gamma", "theta_per_year", "theta_per_day", "vega", "rho", "d1", "d2")


def chain_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """200 strikes from 60% to 140% of the spot, calls and puts, priced on a smile."""
    strikes = np.linspace(0.6 * SPOT, 1.4 * SPOT, STRIKES)
    strike = np.concatenate([strikes, strikes])
    call = np.concatenate([np.ones(STRIKES, bool), np.zeros(STRIKES, bool)])
    m = np.log(strike / SPOT)
    smile = 0.2 + 0.8 * m * m - 0.1 * m
    price = chain_values(
        model="bs", call=call, spot=SPOT, strike=strike, years=YEARS, rate=RATE, volatility=smile, dividend_yield=DIVIDEND
    ).price
    return call, strike, price


def vectorised(call: np.ndarray, strike: np.ndarray, price: np.ndarray) -> tuple[np.ndarray, object]:
    iv = chain_implied_volatility(
        model="bs", call=call, price=price, spot=SPOT, strike=strike, years=YEARS, rate=RATE, dividend_yield=DIVIDEND
    )
    solved = np.isfinite(iv.volatility)
    greeks = chain_values(
        model="bs",
        call=call,
        spot=SPOT,
        strike=strike,
        years=YEARS,
        rate=RATE,
        volatility=np.where(solved, iv.volatility, 0.0),
        dividend_yield=DIVIDEND,
    )
    return iv.volatility, greeks


def loop(call: np.ndarray, strike: np.ndarray, price: np.ndarray) -> list[tuple[float | None, object]]:
    out = []
    for is_call, k, p in zip(call.tolist(), strike.tolist(), price.tolist(), strict=True):
        side = "call" if is_call else "put"
        iv = implied_volatility(model="bs", option_type=side, price=p, spot=SPOT, strike=k, years=YEARS, rate=RATE, dividend_yield=DIVIDEND)
        greeks = None
        if iv.volatility is not None:
            greeks = option_value(
                model="bs", option_type=side, spot=SPOT, strike=k, years=YEARS, rate=RATE, volatility=iv.volatility, dividend_yield=DIVIDEND
            )
        out.append((iv.volatility, greeks))
    return out


def bench_chain(rounds: int) -> dict[str, object]:
    call, strike, price = chain_inputs()
    vol, greeks = vectorised(call, strike, price)
    reference = loop(call, strike, price)
    # The two paths agree before they are timed.
    worst = 0.0
    for i, (iv, scalar) in enumerate(reference):
        assert (iv is None) == (not np.isfinite(vol[i]))
        if iv is not None:
            worst = max(worst, abs(iv - vol[i]))
            for name in GREEKS:
                assert np.isclose(getattr(greeks, name)[i], getattr(scalar, name), rtol=1e-6, atol=1e-9), name
    vector_ms, loop_ms = [], []
    repeat = 20
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(repeat):
            vectorised(call, strike, price)
        vector_ms.append((time.perf_counter() - t) / repeat * 1000)
        t = time.perf_counter()
        loop(call, strike, price)
        loop_ms.append((time.perf_counter() - t) * 1000)
    v, lp = statistics.median(vector_ms), statistics.median(loop_ms)
    return {
        "options": 2 * STRIKES,
        "solved": int(np.isfinite(vol).sum()),
        "max_iv_difference_vs_brentq": worst,
        "vectorised_ms_per_chain": round(v, 3),
        "loop_ms_per_chain": round(lp, 3),
        "ratio": round(lp / v, 2),
        "goal_ratio": GOAL_RATIO,
        "meets_goal": lp / v >= GOAL_RATIO,
        "vectorised_ms_each_round": [round(x, 3) for x in vector_ms],
        "loop_ms_each_round": [round(x, 3) for x in loop_ms],
    }


def bench_endpoint(rounds: int, requests: int = 20) -> dict[str, object] | None:
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres", "pgsql")):
        print("endpoint latency skipped: set DATABASE_URL to a PostgreSQL server")
        return None
    os.environ.setdefault("THROTTLE_USER", "100000000/min")
    os.environ.setdefault("SIMULATOR_ENABLED", "false")
    os.environ.pop("REDIS_URL", None)  # the embedded path: quotes in this process's cache
    from bench.database import bench_django_setup

    bench_django_setup(os.environ.get("FO_BENCH_DB", "terminal_bench_fo"), program="fo_bench")
    from datetime import date, timedelta
    from decimal import Decimal

    from django.test import Client

    from accounts.models import User
    from accounts.services import api_key_create, user_create
    from marketdata.models import Instrument
    from marketdata.quotes import quotes_store
    from marketdata.services import instrument_upsert
    from marketdata.types import Quote

    expiry = date.today() + timedelta(days=30)
    index = instrument_upsert(symbol="BENCH:FO", type="index", tick_size=Decimal("0.05"))
    now = time.time()
    quotes = [Quote(symbol="BENCH:FO", time=now, last=Decimal(5000))]
    for n in range(ENDPOINT_STRIKES):
        k = 3750 + 50 * n
        for side in ("call", "put"):
            symbol = f"BENCH:FO-{side[0].upper()}{k}"
            if not Instrument.objects.filter(symbol=symbol, expiry=expiry).exists():
                Instrument.objects.filter(symbol=symbol).delete()
                instrument_upsert(
                    symbol=symbol,
                    type="option",
                    underlying=index,
                    expiry=expiry,
                    strike=Decimal(k),
                    option_type=side,
                    tick_size=Decimal("0.05"),
                )
            years = 30 / 365
            m = float(np.log(k / 5000))
            value = option_value(model="bs", option_type=side, spot=5000, strike=k, years=years, rate=0.065, volatility=0.2 + 0.8 * m * m)
            mid = Decimal(str(round(max(value.price, 0.05), 2)))
            quotes.append(
                Quote(
                    symbol=symbol,
                    time=now,
                    last=mid,
                    bid=mid - Decimal("0.05"),
                    ask=mid + Decimal("0.05"),
                    bid_size=Decimal(75),
                    ask_size=Decimal(60),
                    open_interest=Decimal(1000 + n),
                )
            )
    quotes_store(quotes)
    user = User.objects.filter(email="fo-bench@example.com").first() or user_create(
        email="fo-bench@example.com", password="fo-bench-pass-1"
    )
    key = api_key_create(user=user, name="fo-bench", scope="read").key
    client = Client(headers={"X-API-Key": key})
    url = f"/api/v1/fo/strike-distribution?underlying=BENCH:FO&expiry={expiry.isoformat()}&strikes={ENDPOINT_STRIKES}"
    for _ in range(5):
        response = client.get(url)
        assert response.status_code == 200, response.content[:300]
    assert len(response.json()["strikes"]) == ENDPOINT_STRIKES
    per_round = []
    for _ in range(rounds):
        samples = []
        for _ in range(requests):
            t = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200
        per_round.append(statistics.median(samples))
    return {
        "strikes": ENDPOINT_STRIKES,
        "options": 2 * ENDPOINT_STRIKES,
        "median_ms": round(statistics.median(per_round), 3),
        "each_round_median_ms": [round(x, 3) for x in per_round],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fo.json")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    chain = bench_chain(args.rounds)
    endpoint = bench_endpoint(args.rounds)
    result = {
        "benchmark": "fo",
        "rounds": args.rounds,
        "chain": chain,
        "endpoint": endpoint,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"IV + Greeks, {chain['options']} options ({chain['solved']} solved), medians of {args.rounds} rounds: "
        f"vectorised {chain['vectorised_ms_per_chain']:.3f} ms/chain | per-option loop {chain['loop_ms_per_chain']:.1f} ms/chain | "
        f"ratio {chain['ratio']:.1f}x (goal {GOAL_RATIO:.0f}x); largest IV difference vs brentq {chain['max_iv_difference_vs_brentq']:.1e}"
    )
    print(f"  rounds vectorised ms: {chain['vectorised_ms_each_round']}")
    print(f"  rounds loop ms:       {chain['loop_ms_each_round']}")
    if endpoint is not None:
        print(
            f"GET /api/v1/fo/strike-distribution, {ENDPOINT_STRIKES} strikes: median {endpoint['median_ms']:.2f} ms (rounds {endpoint['each_round_median_ms']})"
        )
    print(f"load average {result['load_average_before']} -> {result['load_average_after']} on {os.cpu_count()} CPUs")
    print(f"written to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
