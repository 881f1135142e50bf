"""/api/v1/health tells when accepted orders are not being sent: no live Celery
worker is degraded, naming it and the age of the oldest unsent order; /metrics
exports the same; /health/ready stays about this process."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.conf import settings
from django.utils import timezone

from brokers.services import broker_account_create
from core.health import pipeline_health_clear
from marketdata.services import instrument_upsert
from oms.models import Order
from tests.oms_support import order_spec
from tests.servers import free_port, run_celery_worker, run_daphne, run_redis_server

RESTING = {"symbol": "AAPL", "side": "buy", "order_type": "limit", "qty": "1", "price": "1.00"}


@pytest.fixture
def paper(alice):
    instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    return broker_account_create(owner=alice, kind="paper", label="paper")


@pytest.fixture(autouse=True)
def _fresh_health():
    pipeline_health_clear()
    yield
    pipeline_health_clear()


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not exported"
    return float(match.group(1))


# --- embedded default: the worker is this process --------------------------------------------------


@pytest.mark.django_db
def test_eager_celery_is_healthy_and_reports_the_unsent_order_age(api, client, paper, settings):
    from oms.services.send import order_send

    settings.CELERY_TASK_ALWAYS_EAGER = True
    # Not committed (the test's transaction): the send never runs, the order waits.
    order = order_send(account=paper, actor=None, source="rest", spec=order_spec(**RESTING))
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(seconds=42))

    body = api.get("/api/v1/health").json()
    metrics = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()

    assert body["status"] == "ok" and body["degraded"] == []
    assert body["version"] == settings.VERSION and "git_revision" in body
    assert body["checks"]["workers"]["status"] == "ok" and body["checks"]["workers"]["mode"] == "eager"
    assert body["checks"]["order_pipeline"]["unsent_orders"] == 1
    assert body["checks"]["order_pipeline"]["oldest_unsent_order_age_seconds"] >= 42
    assert metric(metrics, "terminal_celery_workers_up") == 1
    assert metric(metrics, "terminal_oms_unsent_orders") == 1
    assert metric(metrics, "terminal_oms_oldest_unsent_order_age_seconds") >= 42


@pytest.mark.django_db
def test_health_reports_no_unsent_order_as_zero(api, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    body = api.get("/api/v1/health").json()
    assert body["checks"]["order_pipeline"] == {"status": "ok", "unsent_orders": 0, "oldest_unsent_order_age_seconds": 0.0}


# --- production mode: a real worker, or none ------------------------------------------------------


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_without_a_worker_health_is_degraded_until_a_worker_sends_the_order(tmp_path, alice_key, paper):
    if not settings.REDIS_URL:
        pytest.skip("production mode only: the embedded default runs tasks in process")
    # The broker is a private redis-server: the suite's shared worker (on
    # REDIS_URL) never consumes it, so no worker is alive for this broker.
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    env = {"CELERY_BROKER_URL": broker, "CELERY_TASK_ALWAYS_EAGER": "false", "HEALTH_CACHE_SECONDS": "0"}
    with (
        run_redis_server(port, tmp_path),
        run_daphne(tmp_path, RUN_LOOPS_IN_PROCESS="false", SIMULATOR_ENABLED="false", **env) as server,
    ):
        accepted = requests.post(
            f"{server.url}/api/v1/accounts/{paper.pk}/orders", json=RESTING, headers={"X-API-Key": alice_key}, timeout=10
        )
        assert accepted.status_code == 202, accepted.text
        order_id = accepted.json()["order_id"]
        time.sleep(0.3)  # an age above 0 at 0.1 s resolution
        health = requests.get(f"{server.url}/api/v1/health", timeout=10).json()
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
        ready = requests.get(f"{server.url}/api/v1/health/ready", timeout=10)
        answer = requests.get(f"{server.url}/api/v1/orders/{order_id}", headers={"X-API-Key": alice_key}, timeout=10).json()

        assert health["status"] == "degraded", health
        assert health["degraded"] == ["workers"]
        workers = health["checks"]["workers"]
        assert workers["status"] == "missing" and workers["alive"] == 0
        assert "no live Celery worker" in workers["detail"]
        pipeline = health["checks"]["order_pipeline"]
        assert pipeline["unsent_orders"] == 1 and pipeline["oldest_unsent_order_age_seconds"] > 0
        assert metric(metrics, "terminal_celery_workers_up") == 0
        assert metric(metrics, "terminal_celery_workers_alive") == 0
        assert metric(metrics, "terminal_oms_unsent_orders") == 1
        assert metric(metrics, "terminal_oms_oldest_unsent_order_age_seconds") > 0
        assert ready.status_code == 200, ready.text  # the load balancer keeps this API up
        assert answer["status"] == "pending_new" and answer["sent_at"] is None

        with run_celery_worker(tmp_path, CELERY_BROKER_URL=broker):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                health = requests.get(f"{server.url}/api/v1/health", timeout=10).json()
                if health["status"] == "ok" and health["checks"]["order_pipeline"]["unsent_orders"] == 0:
                    break
                time.sleep(0.3)
            metrics = requests.get(f"{server.url}/metrics", timeout=10).text
            answer = requests.get(f"{server.url}/api/v1/orders/{order_id}", headers={"X-API-Key": alice_key}, timeout=10).json()

        assert health["status"] == "ok", f"{health}\n{(tmp_path / 'celery-worker.log').read_text()[-3000:]}"
        assert health["checks"]["workers"]["alive"] == 1 and len(health["checks"]["workers"]["workers"]) == 1
        assert health["checks"]["order_pipeline"]["oldest_unsent_order_age_seconds"] == 0
        assert metric(metrics, "terminal_celery_workers_up") == 1
        assert metric(metrics, "terminal_oms_unsent_orders") == 0
        assert answer["sent_at"] is not None and answer["status"] != "pending_new"


def test_loading_the_apps_opens_no_database_connection(tmp_path):
    # A metrics collector read at registration queried the database while the
    # apps loaded: in the tests that opened the real database's pool before the
    # test database existed, so the suite migrated and used the real database
    # while the servers it started served the empty test database.
    import subprocess
    import sys

    from tests.servers import ROOT, server_env

    probe = (
        "import django; django.setup()\n"
        "from django.db import connection\n"
        "pools = getattr(type(connection), '_connection_pools', {})\n"
        "print('opened' if connection.connection is not None or pools else 'closed')\n"
    )
    env = server_env(DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "closed", result.stderr[-3000:]
