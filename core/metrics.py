"""Prometheus view of the pipeline health: how many Celery workers are alive."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class WorkersCollector(Collector):
    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registration reads the names from here, not from a collect() that
        # would reach Redis and the database while the apps load.
        yield GaugeMetricFamily("terminal_celery_workers_alive", "")
        yield GaugeMetricFamily("terminal_celery_workers_up", "")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from core.health import pipeline_health

        workers = pipeline_health()["workers"]
        alive = GaugeMetricFamily(
            "terminal_celery_workers_alive", "Celery workers with a fresh heartbeat (1 with eager Celery: this process runs the tasks)."
        )
        alive.add_metric([], workers.get("alive", 0))
        yield alive
        up = GaugeMetricFamily("terminal_celery_workers_up", "1 when at least one Celery worker is alive, 0 when none (or unknown).")
        up.add_metric([], 1 if workers.get("status") == "ok" else 0)
        yield up
