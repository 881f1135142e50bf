"""The order pipeline's part of /api/v1/health and /metrics: accepted orders
that wait for their send, and how long the oldest has waited; and the
account syncs' outcomes per broker kind."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from oms.selectors import orders_unsent_summary


def order_pipeline_check() -> dict[str, Any]:
    count, oldest = orders_unsent_summary()
    age = round(max(0.0, (timezone.now() - oldest).total_seconds()), 1) if oldest is not None else 0.0
    return {"status": "ok", "unsent_orders": count, "oldest_unsent_order_age_seconds": age}


class OrderPipelineCollector(Collector):
    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registration reads the names from here: a collect() at start-up would
        # query the database while the apps load (in the tests, the real
        # database's pool opened before the test database existed).
        yield GaugeMetricFamily("terminal_oms_unsent_orders", "")
        yield GaugeMetricFamily("terminal_oms_oldest_unsent_order_age_seconds", "")

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


class AccountSyncCollector(Collector):
    """Account syncs per broker kind: runs per outcome and drifted symbols
    seen (counters kept in the cache, so every process's syncs count), and,
    over the active real accounts the schedule syncs, the age of the oldest
    last sync, the longest last duration and how many failed last time."""

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        # Registration reads the names from here, not from a collect() that
        # would query the database while the apps load.
        yield CounterMetricFamily("terminal_account_syncs", "", labels=["kind", "outcome"])
        yield CounterMetricFamily("terminal_account_sync_drift", "", labels=["kind"])
        for name in ("accounts", "never_synced", "oldest_age_seconds", "max_duration_seconds", "failing"):
            yield GaugeMetricFamily(f"terminal_account_sync_{name}", "", labels=["kind"])

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        from oms.services.sync import accounts_sync_health, sync_counters

        try:
            counters = sync_counters()
        except Exception:  # the cache is down: /metrics still answers
            counters = None
        if counters is not None:
            runs = CounterMetricFamily(
                "terminal_account_syncs", "Account syncs run, per broker kind and outcome.", labels=["kind", "outcome"]
            )
            for (kind, outcome), count in sorted(counters["syncs"].items()):
                runs.add_metric([kind, outcome], count)
            yield runs
            drift = CounterMetricFamily(
                "terminal_account_sync_drift", "Symbols whose quantity differed between the broker and the terminal.", labels=["kind"]
            )
            for kind, count in sorted(counters["drift"].items()):
                drift.add_metric([kind], count)
            yield drift
        try:
            health = accounts_sync_health()
        except Exception:  # the database did not answer: export nothing rather than a false 0
            return
        families = {
            "accounts": GaugeMetricFamily("terminal_account_sync_accounts", "Active real accounts the schedule syncs.", labels=["kind"]),
            "never_synced": GaugeMetricFamily(
                "terminal_account_sync_never_synced", "Active real accounts never synced successfully.", labels=["kind"]
            ),
            "oldest_age": GaugeMetricFamily(
                "terminal_account_sync_oldest_age_seconds", "Age of the oldest last successful sync (0: none yet).", labels=["kind"]
            ),
            "max_duration": GaugeMetricFamily(
                "terminal_account_sync_max_duration_seconds", "Longest last sync duration among the accounts.", labels=["kind"]
            ),
            "failing": GaugeMetricFamily("terminal_account_sync_failing", "Accounts whose last sync failed.", labels=["kind"]),
        }
        for kind, row in sorted(health.items()):
            for name, family in families.items():
                family.add_metric([kind], row[name])
        yield from families.values()
