"""The order pipeline's part of /api/v1/health and /metrics: accepted orders
that wait for their send, and how long the oldest has waited."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from oms.selectors import orders_unsent_summary


def order_pipeline_check() -> dict[str, Any]:
    count, oldest = orders_unsent_summary()
    age = round(max(0.0, (timezone.now() - oldest).total_seconds()), 1) if oldest is not None else 0.0
    return {"status": "ok", "unsent_orders": count, "oldest_unsent_order_age_seconds": age}


class OrderPipelineCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        from core.health import pipeline_health

        pipeline = pipeline_health().get("order_pipeline", {})
        if "unsent_orders" not in pipeline:  # the database did not answer: export nothing rather than a false 0
            return
        count = GaugeMetricFamily("terminal_oms_unsent_orders", "Accepted orders in pending_new not yet sent to their broker.")
        count.add_metric([], pipeline["unsent_orders"])
        yield count
        age = GaugeMetricFamily(
            "terminal_oms_oldest_unsent_order_age_seconds", "Age of the oldest accepted order not yet sent to its broker (0: none)."
        )
        age.add_metric([], pipeline["oldest_unsent_order_age_seconds"])
        yield age
