"""Throttles hold: failed authentications per client address, and every rate
counted atomically (issue 8, parts 1 and 3)."""

from __future__ import annotations

import concurrent.futures

import pytest
import requests
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import ApiKey

pytestmark = pytest.mark.django_db


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    return body["error"]


@override_settings(THROTTLE_AUTH_FAILURES="3/min")
def test_failed_api_key_authentications_are_throttled_per_client_address(alice_key):
    attacker = APIClient(REMOTE_ADDR="203.0.113.7")
    attacker.credentials(HTTP_X_API_KEY="tt_deadbeef_" + "x" * 43)
    assert [attacker.get("/api/v1/me").status_code for _ in range(3)] == [401, 401, 401]
    response = attacker.get("/api/v1/me")
    _error(response, 429, "throttled")
    assert 0 < int(response["Retry-After"]) <= 60
    # Blocked for the window, whatever it sends, so guessing stops paying.
    attacker.credentials(HTTP_X_API_KEY=alice_key)
    _error(attacker.get("/api/v1/me"), 429, "throttled")
    # Other addresses are not affected.
    neighbour = APIClient(REMOTE_ADDR="203.0.113.8")
    neighbour.credentials(HTTP_X_API_KEY=alice_key)
    assert neighbour.get("/api/v1/me").status_code == 200


@override_settings(THROTTLE_AUTH_FAILURES="2/min")
def test_a_forged_x_forwarded_for_does_not_dodge_the_failure_throttle():
    codes = []
    for n in range(4):
        client = APIClient(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
        client.credentials(HTTP_X_API_KEY="tt_deadbeef_" + "y" * 43)
        codes.append(client.get("/api/v1/me").status_code)
    assert codes == [401, 401, 429, 429]


@override_settings(THROTTLE_AUTH_FAILURES="2/min")
def test_successful_authentications_are_not_counted(alice_key):
    client = APIClient(REMOTE_ADDR="203.0.113.10")
    client.credentials(HTTP_X_API_KEY=alice_key)
    assert {client.get("/api/v1/me").status_code for _ in range(10)} == {200}


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_concurrent_key_creation_never_passes_the_rate(server_tmp, alice):
    """Two web processes (scale-out) and 20 concurrent clients: exactly the rate
    is created, the rest answer 429 with Retry-After."""
    from django.conf import settings

    from accounts.services import api_key_create
    from tests.servers import run_daphne

    if not settings.REDIS_URL:
        pytest.skip("the processes share their counters through Redis (production mode)")
    parent = api_key_create(user=alice, name="manager", scope="trade", manage_keys=True).key
    rate = 30
    env = {"THROTTLE_API_KEYS": f"{rate}/min", "SIMULATOR_ENABLED": "false", "THROTTLE_AUTH_FAILURES": "1000/min"}
    with run_daphne(server_tmp, **env) as one, run_daphne(server_tmp, **env) as two:
        urls = [one.url, two.url]

        def create(n: int) -> requests.Response:
            return requests.post(
                f"{urls[n % 2]}/api/v1/api-keys", json={"name": f"k{n}", "scope": "read"}, headers={"X-API-Key": parent}, timeout=30
            )

        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            responses = list(pool.map(create, range(100)))
    codes = [r.status_code for r in responses]
    assert codes.count(201) == rate, codes
    assert codes.count(429) == 100 - rate, codes
    throttled = next(r for r in responses if r.status_code == 429)
    assert throttled.json()["error"]["code"] == "throttled" and int(throttled.headers["Retry-After"]) >= 1
    assert ApiKey.objects.filter(user=alice, revoked_at__isnull=True).count() == rate + 1
