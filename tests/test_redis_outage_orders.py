"""A Redis outage under the production processes (issue 8, part 4): order
writes answer 503 ``service_unavailable`` in the error shape and change
nothing, reads go on, the health endpoints say what is down; once Redis is
back, orders work again without restarting the web process, and the Celery
worker started before the outage consumes them. Everything runs on a private
redis-server (its own port), never the shared one."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import requests
from django.db import connection

from brokers.services import broker_account_create
from marketdata.services import instrument_upsert
from oms.models import Order
from tests.servers import free_port, needs_redis_server, run_celery_worker, run_daphne, run_redis_server

pytestmark = [
    pytest.mark.server,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="production mode only (PostgreSQL + Redis)"),
    needs_redis_server,
]

RESTING = {"symbol": "AAPL", "side": "buy", "order_type": "limit", "qty": "1", "price": "1.00"}


def _post_order(server, key: str, account_id: int, **extra) -> requests.Response:
    return requests.post(
        f"{server.url}/api/v1/accounts/{account_id}/orders", json={**RESTING, **extra}, headers={"X-API-Key": key}, timeout=15
    )


def _wait(predicate, seconds: float, what: str, log=lambda: ""):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} within {seconds}s\n{log()}")


def _sent(order_id: int) -> bool:
    order = Order.objects.get(pk=order_id)
    return order.sent_at is not None and order.status != "pending_new"


def test_orders_during_a_redis_outage_answer_503_and_resume_after_it(alice, alice_key, tmp_path):
    instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    paper = broker_account_create(owner=alice, kind="paper", label="paper")
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    env = {
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CHANNEL_LAYER_PREFIX": "outage",
        "HEALTH_CACHE_SECONDS": "0",
        "WORKER_HEARTBEAT_INTERVAL": "1",
        "RUN_LOOPS_IN_PROCESS": "false",
        "SIMULATOR_ENABLED": "false",
    }
    with (
        run_redis_server(port, tmp_path) as first_redis,
        run_daphne(tmp_path, **env) as server,
        run_celery_worker(tmp_path, CELERY_RESULT_BACKEND=redis_url, **env) as worker,
    ):
        worker_log = (tmp_path / "celery-worker.log").read_text
        logs = lambda: f"--- web\n{server.log()}\n--- worker\n{worker_log(errors='replace')[-5000:]}"  # noqa: E731

        before = _post_order(server, alice_key, paper.pk, client_order_id="before-outage")
        assert before.status_code == 202, before.text
        _wait(lambda: _sent(before.json()["order_id"]), 30, "the order before the outage was not sent", logs)

        first_redis.terminate()
        first_redis.wait(timeout=10)
        orders_before = Order.objects.count()

        # Writes: 503 in the error shape, promptly, nothing written.
        for n in range(3):
            started = time.monotonic()
            refused = _post_order(server, alice_key, paper.pk, client_order_id=f"during-outage-{n}")
            assert time.monotonic() - started < 10, "an order write hung during the outage"
            assert refused.status_code == 503, refused.text
            error = refused.json()["error"]
            assert error["code"] == "service_unavailable", error
            assert error["request_id"] == refused.headers["X-Request-ID"]
            assert refused.headers.get("Retry-After"), refused.headers
        batch = requests.post(
            f"{server.url}/api/v1/accounts/{paper.pk}/batch-orders",
            json={"orders": [{**RESTING, "client_order_id": "during-outage-batch"}]},
            headers={"X-API-Key": alice_key},
            timeout=15,
        )
        assert batch.status_code == 503, batch.text
        assert Order.objects.count() == orders_before
        assert not Order.objects.filter(client_order_id__startswith="during-outage").exists()

        # Reads go on.
        listed = requests.get(f"{server.url}/api/v1/accounts/{paper.pk}/orders", headers={"X-API-Key": alice_key}, timeout=15)
        assert listed.status_code == 200, listed.text
        assert [o["client_order_id"] for o in listed.json()["results"]] == ["before-outage"]

        # Health tells the truth: not ready, naming what is down; the whole deployment degraded.
        ready = requests.get(f"{server.url}/api/v1/health/ready", timeout=20)
        assert ready.status_code == 503, ready.text
        failing = {name for name, check in ready.json()["checks"].items() if check["status"] != "ok"}
        assert {"cache", "channel_layer", "celery_broker"} <= failing, ready.json()
        assert "database" not in failing
        health = requests.get(f"{server.url}/api/v1/health", timeout=20)
        assert health.status_code == 200 and health.json()["status"] == "degraded", health.text
        assert requests.get(f"{server.url}/api/v1/health/live", timeout=10).status_code == 200

        # Redis back on the same port (empty, as after a crash): no restart of web or worker.
        with run_redis_server(port, tmp_path):
            after = _wait(
                lambda: (r := _post_order(server, alice_key, paper.pk, client_order_id="after-outage")).status_code == 202 and r,
                30,
                "orders did not work again after Redis came back",
                logs,
            )
            _wait(lambda: _sent(after.json()["order_id"]), 60, "the worker did not send the order after Redis came back", logs)
            assert worker.poll() is None, logs()
            _wait(
                lambda: requests.get(f"{server.url}/api/v1/health/ready", timeout=20).status_code == 200,
                30,
                "readiness did not recover",
                logs,
            )
            _wait(
                lambda: requests.get(f"{server.url}/api/v1/health", timeout=20).json()["status"] == "ok",
                30,
                "health did not recover",
                logs,
            )

    ids = list(Order.objects.filter(account=paper).order_by("id").values_list("client_order_id", flat=True))
    assert ids == ["before-outage", "after-outage"]
