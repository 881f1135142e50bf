"""Request pacing per credential: never more than the broker's rate, callers
served in turn, and a caller that would wait too long is told when to retry
instead of blocking.

Runs in both modes: in process on the embedded default, one Redis bucket for
every process when ``REDIS_URL`` is set.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time

import pytest
from django.conf import settings

from brokers.base import BrokerRateLimited
from brokers.errors import domain_error_for
from brokers.pacing import pace
from core.exceptions import exception_handler
from tests.servers import ROOT, server_env
from tests.token_callers import run_together


def _key() -> str:
    return "test-pace:" + secrets.token_hex(8)


def _most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most = 0
    start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_calls_are_spaced_at_the_rate_and_never_exceed_it():
    key = _key()
    times = []
    started = time.monotonic()
    for _ in range(21):
        pace(key, rate=20, burst=1, max_wait=1.0)
        times.append(time.monotonic())
    assert 0.9 < times[-1] - started < 1.6  # 20 intervals of 50 ms
    # A little slack for the sleep's and the clock's granularity.
    assert _most_in_any_window(times, 0.99) <= 20


def test_a_burst_goes_at_once_then_the_rate_applies():
    key = _key()
    started = time.monotonic()
    for _ in range(3):
        pace(key, rate=10, burst=3, max_wait=1.0)
    assert time.monotonic() - started < 0.05
    pace(key, rate=10, burst=3, max_wait=1.0)
    assert 0.07 < time.monotonic() - started < 0.3


def test_a_caller_past_max_wait_is_refused_with_retry_after_and_takes_no_slot():
    key = _key()
    pace(key, rate=2, burst=1, max_wait=0)  # the slot of now; the next is in 0.5 s
    started = time.monotonic()
    with pytest.raises(BrokerRateLimited) as refused:
        pace(key, rate=2, burst=1, max_wait=0.1)
    assert time.monotonic() - started < 0.05  # refused at once, not after a wait
    assert 0.3 < refused.value.retry_after <= 0.5

    response = exception_handler(domain_error_for(refused.value), {})
    assert response is not None and response.status_code == 503
    assert response.data["error"]["code"] == "broker_busy" and response["Retry-After"] == "1"

    # The refusal reserved nothing: a caller that waits gets the next slot.
    started = time.monotonic()
    pace(key, rate=2, burst=1, max_wait=1.0)
    assert 0.3 < time.monotonic() - started < 0.6


def test_concurrent_callers_share_one_bucket_in_turn():
    key = _key()
    times: list[float] = []
    refused: list[BrokerRateLimited] = []
    guard = threading.Lock()
    start = threading.Barrier(10)

    def call() -> None:
        start.wait()
        for _ in range(3):
            try:
                pace(key, rate=50, burst=1, max_wait=2.0)
            except BrokerRateLimited as exc:
                refused.append(exc)
                continue
            with guard:
                times.append(time.monotonic())

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert refused == [] and len(times) == 30
    assert 0.5 < max(times) - min(times) < 1.2  # 29 intervals of 20 ms
    assert _most_in_any_window(times, 0.099) <= 6  # 5 per 100 ms, plus slack


def test_credentials_have_their_own_buckets():
    first, second = _key(), _key()
    pace(first, rate=1, burst=1, max_wait=0)
    started = time.monotonic()
    pace(second, rate=1, burst=1, max_wait=0)
    assert time.monotonic() - started < 0.05
    with pytest.raises(BrokerRateLimited):
        pace(first, rate=1, burst=1, max_wait=0)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not settings.REDIS_URL, reason="one bucket for every process needs Redis (production mode)")
def test_processes_on_one_credential_share_its_bucket():
    key = _key()
    command = [sys.executable, "-m", "tests.token_callers", "--pace", key, "--calls", "10", "--rate", "10"]
    env = server_env(VAR_DIR=str(settings.VAR_DIR), DJANGO_SETTINGS_MODULE="config.settings")
    results = run_together([command, command], env=env, cwd=str(ROOT))
    times = [t for r in results for t in r["times"]]
    assert len(times) == 20
    assert max(times) - min(times) > 1.7  # 19 intervals of 100 ms, not 9
    # One bucket: about 10 a second, not 20. The times are taken after each call returns, in
    # two processes: on a loaded machine one late reading can join the next second's ten.
    assert _most_in_any_window(times, 0.99) <= 11
