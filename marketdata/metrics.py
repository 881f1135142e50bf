"""Prometheus view of the broadcast counters, which live in the cache (Redis
in production) because the ``marketdata`` process updates them."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class BroadcastCollector(Collector):
    def describe(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        # Registration reads the names from here, not from the cache (Redis).
        for name in ("broadcasts_sent", "broadcasts_skipped", "errors"):
            yield CounterMetricFamily(f"terminal_marketdata_{name}", "")
        yield GaugeMetricFamily("terminal_marketdata_subscribers", "", labels=["kind"])

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        from marketdata.streaming import broadcast_stats

        try:
            stats = broadcast_stats()
        except Exception:  # the cache is down: /metrics still answers
            return
        for name in ("broadcasts_sent", "broadcasts_skipped", "errors"):
            metric = CounterMetricFamily(f"terminal_marketdata_{name}", f"Market-data stream {name.replace('_', ' ')}.")
            metric.add_metric([], stats[name])
            yield metric
        gauge = GaugeMetricFamily("terminal_marketdata_subscribers", "Market-data stream subscriptions.", labels=["kind"])
        gauge.add_metric(["quotes"], stats["subscribers"]["quotes"])
        gauge.add_metric(["bars"], stats["subscribers"]["bars"])
        yield gauge
