"""Bounded per-request resources in the production mode: database connections
from a pool, fire-and-forget tasks without a result backend, one Redis
connection for every publish of a process."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
import redis
import requests
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from tests import servers
from tests.servers import free_port, needs_redis_server, run_daphne, run_redis_server, worker_ping

POOL_SIZE = 3


@pytest.mark.postgres
@pytest.mark.server
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL mode only")
def test_100_sequential_requests_open_at_most_the_pool_size_of_connections(alice_key, tmp_path):
    # The server names its connections, so its sessions can be told apart.
    name = f"pool-test-{uuid.uuid4().hex[:8]}"
    with run_daphne(
        tmp_path,
        DATABASE_URL=f"{servers.test_database_url()}?application_name={name}",
        DB_POOL_MAX_SIZE=str(POOL_SIZE),
        RUN_LOOPS_IN_PROCESS="false",
        SIMULATOR_ENABLED="false",
    ) as server:
        session = requests.Session()
        session.headers["X-API-Key"] = alice_key
        sessions: set[int] = set()
        for _ in range(100):
            response = session.get(f"{server.url}/api/v1/me", timeout=10)
            assert response.status_code == 200 and response.json()["email"] == "alice@example.com"
            with connection.cursor() as cursor:
                cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [name])
                sessions |= {pid for (pid,) in cursor.fetchall()}
    assert 1 <= len(sessions) <= POOL_SIZE, f"{len(sessions)} server sessions for 100 requests"


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not settings.REDIS_URL, reason="production mode only (REDIS_URL unset: embedded default)")
def test_a_fire_and_forget_task_stores_no_result_and_subscribes_to_none(celery_worker_process):
    from core.tasks import ping

    client = redis.Redis.from_url(settings.REDIS_URL)
    sent = ping.delay()
    result_key = f"celery-task-meta-{sent.id}"
    assert client.pubsub_numsub(result_key) == [(result_key.encode(), 0)], "delay() subscribed to the task's result"
    assert worker_ping() == "pong"  # the worker has run everything sent before
    assert client.exists(result_key) == 0, "the worker stored the result of a fire-and-forget task"


@pytest.mark.redis
@pytest.mark.skipif(not settings.REDIS_URL, reason="production mode only (REDIS_URL unset: embedded default)")
@needs_redis_server
def test_publishes_from_many_threads_reuse_one_redis_connection(settings, tmp_path):
    from streams.publish import group_for, publish

    port = free_port()
    with run_redis_server(port, tmp_path):
        # Only this test talks to this Redis: every connection it counts is ours.
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [f"redis://127.0.0.1:{port}/0"], "capacity": 1000, "prefix": "reuse"},
            }
        }
        admin = redis.Redis(port=port)

        async def join() -> str:
            layer = get_channel_layer()
            member = await layer.new_channel()
            await layer.group_add(group_for("quotes:REUSE"), member)
            await layer.close_pools()
            return member

        member = asyncio.run(join())
        connections_before = admin.info("stats")["total_connections_received"]

        # One thread after another, as daphne runs each request in a new thread.
        results: list[bool] = []
        for batch in range(4):
            thread = threading.Thread(
                target=lambda b=batch: results.extend(publish("quotes:REUSE", b * 50 + n, {"n": n}) for n in range(50))
            )
            thread.start()
            thread.join(timeout=30)
        assert results == [True] * 200

        opened = admin.info("stats")["total_connections_received"] - connections_before
        ours = [c for c in admin.client_list() if int(c["id"]) != admin.client_id()]
        assert opened == 1, f"{opened} Redis connections opened for 200 publishes"
        assert len(ours) == 1

        async def drain() -> list[int]:
            layer = get_channel_layer()
            seqs = []
            try:
                while True:
                    seqs.append((await asyncio.wait_for(layer.receive(member), 1.0))["seq"])
            except TimeoutError:
                return seqs
            finally:
                await layer.close_pools()

        assert asyncio.run(drain()) == list(range(200))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL mode only")
@pytest.mark.skipif(not connection.settings_dict.get("OPTIONS", {}).get("pool"), reason="the connection pool is off")
def test_a_request_that_waits_past_the_pool_timeout_gets_503_with_retry_after(alice_key):
    from rest_framework.test import APIClient

    options = connection.settings_dict["OPTIONS"]
    saved = options["pool"]
    connection.close()
    connection.close_pool()  # a new pool of one connection, taken by another thread
    options["pool"] = {"min_size": 1, "max_size": 1, "timeout": 0.2}
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        from django.db import connection as thread_connection

        thread_connection.ensure_connection()
        taken.set()
        release.wait(10)
        thread_connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(10)
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=alice_key)
        response = client.get("/api/v1/me")
        assert response.status_code == 503
        assert response["Retry-After"] == "1"
        error = response.json()["error"]
        assert error["code"] == "service_unavailable" and error["request_id"] == response["X-Request-ID"]
    finally:
        release.set()
        holder.join(10)
        connection.close()
        connection.close_pool()
        options["pool"] = saved
    # The pool back to its size: the same request is answered.
    assert client.get("/api/v1/me").status_code == 200
