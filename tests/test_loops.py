"""The loop runner (core.loops) and the ``run_loops`` command of the marketdata process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from core import loops

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def registry():
    """An empty registry for the test, the app's loops put back afterwards."""
    saved = dict(loops._registry)
    loops._registry.clear()
    yield loops
    loops._registry.clear()
    loops._registry.update(saved)


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_sync_and_async_loops_run_repeatedly(registry):
    sync_threads: list[int] = []
    async_calls: list[float] = []

    def sync_tick() -> None:
        sync_threads.append(threading.get_ident())

    async def async_tick() -> None:
        async_calls.append(time.monotonic())

    sync_loop = registry.register_loop("sync", sync_tick, interval=0.01)
    async_loop = registry.register_loop("async", async_tick, interval=0.01)

    async def scenario() -> None:
        assert sorted(registry.start_in_process()) == ["async", "sync"]
        try:
            await _until(lambda: len(sync_threads) >= 3 and len(async_calls) >= 3)
        finally:
            await registry.stop_all()

    asyncio.run(scenario())
    assert sync_loop.iterations >= 3 and async_loop.iterations >= 3
    assert sync_loop.errors == async_loop.errors == 0
    # Sync loops run off the event loop's thread, so they may block (ORM calls).
    assert threading.get_ident() not in sync_threads


def test_each_sync_loop_runs_every_iteration_on_one_thread_of_its_own(registry):
    """A loop's iterations stay on one thread: what an iteration allocates
    (the simulator's day paths, tens of MB of arrays) is freed into and
    reused from that thread's malloc arena. Handed round a shared pool, every
    thread an iteration ever ran on kept as much in its own arena, and the
    marketdata process grew by that much per thread over a soak."""
    threads: dict[str, set[int]] = {"a": set(), "b": set(), "c": set()}
    counts = dict.fromkeys(threads, 0)

    def tick(name: str) -> None:
        threads[name].add(threading.get_ident())
        counts[name] += 1
        time.sleep(0.002)  # the iterations overlap, so the pool needs several threads

    for name in threads:
        registry.register_loop(name, lambda name=name: tick(name), interval=0)

    async def scenario() -> None:
        registry.start_in_process()
        try:
            await _until(lambda: min(counts.values()) >= 30)
        finally:
            await registry.stop_all()

    asyncio.run(scenario())
    assert {name: len(idents) for name, idents in threads.items()} == {"a": 1, "b": 1, "c": 1}
    assert len(set.union(*threads.values())) == 3  # and not one another's


def test_failing_iteration_is_counted_and_the_loop_goes_on(registry):
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) % 2:
            raise RuntimeError("broker hiccup")

    loop = registry.register_loop("flaky", flaky, interval=0.01)

    async def scenario() -> None:
        registry.start_in_process()
        try:
            await _until(lambda: loop.errors >= 2 and loop.iterations >= 2)
        finally:
            await registry.stop_all()

    asyncio.run(scenario())
    assert loop.last_error == "RuntimeError: broker hiccup"
    assert loop.last_run_at is not None


def test_start_in_process_is_idempotent(registry):
    calls: list[int] = []

    async def tick() -> None:
        calls.append(1)

    registry.register_loop("tick", tick, interval=0.01)

    async def scenario() -> tuple[list[str], list[str], int]:
        first = registry.start_in_process()
        second = registry.start_in_process()
        tasks = [t for t in asyncio.all_tasks() if t.get_name() == "loop:tick"]
        await registry.stop_all()
        return first, second, len(tasks)

    first, second, running = asyncio.run(scenario())
    assert first == ["tick"]
    assert second == []
    assert running == 1


def test_start_in_process_starts_only_the_named_loops(registry):
    async def tick() -> None:
        pass

    registry.register_loop("a", tick, interval=0.01)
    registry.register_loop("b", tick, interval=0.01)

    async def scenario() -> list[str]:
        started = registry.start_in_process(["b"])
        await registry.stop_all()
        return started

    assert asyncio.run(scenario()) == ["b"]


# run_loops in a real subprocess: two loops registered the way an app's ready()
# would, the command started with --only one of them, then SIGTERM.
_RUN_LOOPS_SCRIPT = textwrap.dedent(
    """
    import django
    django.setup()
    from django.core.management import call_command
    from core import loops

    def tick():
        print("tick", flush=True)

    async def other():
        print("other", flush=True)

    loops.register_loop("tick", tick, interval=0.05)
    loops.register_loop("other", other, interval=0.05)
    call_command("run_loops", only="tick")
    print("exited cleanly", flush=True)
    """
)


def _loop_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "WARNING", "VAR_DIR": str(tmp_path)})
    return env


def _wait_for_output(proc: subprocess.Popen, log: Path, needle: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while log.read_text().count(needle) < 3:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"run_loops did not print {needle!r}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def test_run_loops_only_runs_the_named_loops_until_sigterm(tmp_path):
    log = tmp_path / "run_loops.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _RUN_LOOPS_SCRIPT], cwd=ROOT, env=_loop_env(tmp_path), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_for_output(proc, log, "tick")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert "exited cleanly" in output
    assert "other" not in output


def test_run_loops_command_stays_up_until_sigint_and_exits_zero(tmp_path):
    # The real command line of the Procfile's marketdata process.
    log = tmp_path / "marketdata.log"
    env = _loop_env(tmp_path) | {"LOG_LEVEL": "INFO"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "manage.py", "run_loops"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "run_loops running" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(0.5)
        assert proc.poll() is None, "run_loops must keep running, even with nothing to do"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "run_loops stopped" in log.read_text()


def test_run_loops_refuses_unknown_loop_names(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "run_loops", "--only", "no-such-loop"],
        cwd=ROOT,
        env=_loop_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Unknown loop(s): no-such-loop" in result.stderr
