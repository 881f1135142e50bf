"""Named locks: one holder at a time across threads and processes, a bounded
wait, and a holder that dies never blocks the work for good.

Runs in both modes: file locks on the embedded default, Redis locks when
``REDIS_URL`` is set.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.conf import settings

from brokers.base import BrokerUnavailable
from brokers.errors import domain_error_for
from brokers.locks import LockNotAcquired, named_lock
from tests.servers import ROOT, server_env


def _name() -> str:
    return "test-lock:" + secrets.token_hex(8)


@contextmanager
def lock_held_elsewhere(name: str, *, seconds: float, ttl: float = 60.0) -> Iterator[subprocess.Popen]:
    """Another process holds ``name`` for ``seconds`` (yielded once it holds it)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.token_callers", "--hold-lock", name, "--seconds", str(seconds), "--ttl", str(ttl)],
        cwd=ROOT, env=server_env(VAR_DIR=str(settings.VAR_DIR), DJANGO_SETTINGS_MODULE="config.settings"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == "held", proc.stderr.read() if proc.stderr else line
        yield proc
    finally:
        proc.kill()
        proc.communicate(timeout=10)  # reaped, pipes closed


def test_threads_of_one_process_hold_the_lock_one_at_a_time():
    name = _name()
    holders = 0
    most = 0
    counter = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal holders, most, counter
        for _ in range(5):
            with named_lock(name, wait=30):
                with guard:
                    holders += 1
                    most = max(most, holders)
                seen = counter
                time.sleep(0.001)
                counter = seen + 1  # a lost update if two held it at once
                with guard:
                    holders -= 1

    threads = [threading.Thread(target=work) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert most == 1 and counter == 100


@pytest.mark.django_db(transaction=True)
def test_another_process_holding_the_lock_makes_the_caller_wait_then_give_up():
    name = _name()
    with lock_held_elsewhere(name, seconds=30):
        started = time.monotonic()
        with pytest.raises(LockNotAcquired) as refused, named_lock(name, wait=0.3):
            pass
        assert 0.25 < time.monotonic() - started < 2
        assert isinstance(refused.value, BrokerUnavailable)
        assert domain_error_for(refused.value).status_code == 503

        with named_lock(_name(), wait=0):  # another name is free
            pass


@pytest.mark.django_db(transaction=True)
def test_the_caller_gets_the_lock_as_soon_as_the_other_process_releases_it():
    name = _name()
    with lock_held_elsewhere(name, seconds=1.0) as holder:
        started = time.monotonic()
        with named_lock(name, wait=10):
            waited = time.monotonic() - started
        holder.wait(timeout=10)
    assert 0.5 < waited < 3


@pytest.mark.django_db(transaction=True)
def test_a_holder_that_died_frees_the_lock():
    name = _name()
    with lock_held_elsewhere(name, seconds=60, ttl=1.0) as holder:
        holder.kill()
        holder.wait(timeout=10)
        started = time.monotonic()
        # File lock: freed by the kernel at once. Redis lock: expires after its ttl.
        with named_lock(name, wait=5):
            waited = time.monotonic() - started
    assert waited < (1.5 if settings.REDIS_URL else 0.2)


def test_a_lock_taken_again_after_release_is_free():
    name = _name()
    for _ in range(3):
        with named_lock(name, wait=0):
            pass
    with pytest.raises(RuntimeError), named_lock(name, wait=0):
        raise RuntimeError("the block failed")
    with named_lock(name, wait=0):  # released on the way out of a failure
        pass
