"""Root fixtures: named users (alice, bob), API keys, clients, real servers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

# The concurrency tests run up to 50 threads at once in this process: its
# PostgreSQL pool must let them all connect rather than queue them (the pool is
# created at the first connection, after this). The order-rate test runs 150
# senders straight into the services (no web process's concurrency limit in
# front): those past the pool's size queue for a connection, on a loaded CI
# machine for longer than the production default's 10 s.
_pool_options = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
if isinstance(_pool_options, dict):
    _pool_options["max_size"] = max(_pool_options["max_size"], 64)
    _pool_options["timeout"] = max(_pool_options["timeout"], 90.0)

hypothesis_settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.register_profile("dev", max_examples=20, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(autouse=True)
def _fresh_auth_failure_window():
    """Tests all come from 127.0.0.1: one test's failed authentications must not
    throttle the next one's (the counter lives in Redis in the production mode)."""
    yield
    from core.ratelimit import rate_reset

    for address in ("127.0.0.1", "::1"):
        with contextlib.suppress(Exception):  # a test that stopped Redis
            rate_reset(f"auth_failures:{address}")


@pytest.fixture(autouse=True)
def _fresh_order_rate_windows():
    """Account ids come back after a rollback (SQLite): one test's orders must
    not fill the next one's per-second order counter."""
    yield
    from django.conf import settings
    from django.core.cache import cache

    from core.ratelimit import KEY_PREFIX

    pattern = KEY_PREFIX + "orders:"
    with contextlib.suppress(Exception):  # a test that stopped Redis
        if settings.REDIS_URL:
            import redis

            with redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2) as client:
                for key in client.scan_iter(match=pattern + "*", count=500):
                    client.delete(key)
        else:
            cache.delete_many([key.split(":", 2)[2] for key in list(cache._cache) if pattern in key])


@pytest.fixture(autouse=True)
def _no_stream_subscribers():
    """Subscriber counts are per process: one test's subscriptions must not
    make the next one's producers publish."""
    yield
    from streams.subscribers import subscribers_forget

    subscribers_forget()


@pytest.fixture
def alice(db):
    from accounts.services import user_create

    return user_create(email="alice@example.com", password="alice-pass-123")


@pytest.fixture
def bob(db):
    from accounts.services import user_create

    return user_create(email="bob@example.com", password="bob-pass-123")


@pytest.fixture
def staff(db):
    from accounts.services import user_create

    return user_create(email="staff@example.com", password="staff-pass-123", is_staff=True, is_superuser=True)


@pytest.fixture
def alice_key(alice) -> str:
    from accounts.services import api_key_create

    return api_key_create(user=alice, name="alice trade", scope="trade").key


@pytest.fixture
def alice_read_key(alice) -> str:
    from accounts.services import api_key_create

    return api_key_create(user=alice, name="alice read", scope="read").key


@pytest.fixture
def bob_key(bob) -> str:
    from accounts.services import api_key_create

    return api_key_create(user=bob, name="bob trade", scope="trade").key


@pytest.fixture
def expired_key(alice) -> str:
    from accounts.models import ApiKey
    from accounts.services import api_key_create

    issued = api_key_create(user=alice, name="old", scope="trade", expires_at=timezone.now() + timedelta(seconds=30))
    ApiKey.objects.filter(pk=issued.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    return issued.key


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def alice_api(alice_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=alice_key)
    return client


@pytest.fixture
def bob_api(bob_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=bob_key)
    return client


@pytest.fixture(scope="session")
def server_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def live_server_process(django_db_setup, django_db_blocker, server_tmp) -> Iterator:
    """A real daphne process serving the test database (session-wide).

    Tests using it must commit their data: mark them
    ``@pytest.mark.django_db(transaction=True)``."""
    from tests.servers import run_daphne

    # No simulator here: its step runs the paper venue's quote listener, which
    # would match or expire other tests' committed orders (they use fixed
    # clocks) in the shared test database. Tests of live quotes start their own server.
    # Its tasks run inline: an order it enqueued must not be sent by a worker
    # after the test that made it has ended (the real worker has its own tests).
    # No broker feeds either: its feed providers would plan the broker accounts
    # other tests commit and win their connections' leases in Redis (KIS test
    # accounts share one app key), so a test's own marketdata process, pointed
    # at its fake broker, would never connect.
    with (
        django_db_blocker.unblock(),
        run_daphne(
            server_tmp,
            WS_HEARTBEAT_INTERVAL="2",
            WS_PONG_TIMEOUT="2",
            SYSTEM_STATUS_INTERVAL="0.5",
            SIMULATOR_ENABLED="false",
            BROKER_FEEDS_ENABLED="false",
            CELERY_TASK_ALWAYS_EAGER="true",
        ) as server,
    ):
        yield server


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, server_tmp) -> Iterator:
    """A real Celery worker on the Redis broker (production mode only)."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        pytest.skip("embedded default: Celery runs eagerly in process")
    from tests.servers import run_celery_worker

    with django_db_blocker.unblock(), run_celery_worker(server_tmp) as worker:
        yield worker


@pytest.fixture(autouse=True)
def _fresh_instrument_cache():
    """Each test's instruments are its own: a symbol another test cached (then
    rolled back) is looked up afresh."""
    from marketdata.instrument_cache import instrument_cache_clear

    instrument_cache_clear()
    yield
    instrument_cache_clear()


@pytest.fixture
def oms_env(settings) -> Iterator[None]:
    """An OMS test's start (``tests.oms_support.oms_setup``), its tasks run in
    this process; a module takes it with ``pytest.mark.usefixtures("oms_env")``."""
    from tests.oms_support import oms_setup, tasks_in_process

    oms_setup(settings)
    with tasks_in_process():
        yield


LONG_RUN_MARKERS = ("soak", "fuzz_long")


def pytest_collection_modifyitems(config, items):
    """The browser tests run once, in the embedded pass: with the production
    services (PostgreSQL and Redis) they are deselected, not skipped. The long
    runs (``soak``, ``fuzz_long``) run only when ``-m`` names them."""
    wanted = config.getoption("markexpr") or ""
    for item in items:
        for marker in LONG_RUN_MARKERS:
            # The marker itself: ``item.keywords`` also holds the names of the
            # test's parents, the checkout's directory among them.
            if item.get_closest_marker(marker) is not None and marker not in wanted:
                item.add_marker(pytest.mark.skip(reason=f"long run: pytest -m {marker}"))
    if not settings.PRODUCTION_SERVICES:
        return
    browser = [item for item in items if item.get_closest_marker("browser")]
    if browser:
        config.hook.pytest_deselected(items=browser)
        items[:] = [item for item in items if not item.get_closest_marker("browser")]
