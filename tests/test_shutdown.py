"""Stopping the embedded server: SIGTERM always ends the process, even while a
loop thread is blocked in an on-commit publish (a channel layer that stopped
answering). Deterministic: the test waits until the publish is blocked."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest

from tests.servers import BIN, ROOT, free_port, server_env

EXIT_BOUND = 20.0  # seconds; the stop takes a few (bounded waits), a hang never ends


@pytest.mark.django_db(transaction=True)
def test_sigterm_exits_while_a_loop_thread_is_blocked_in_an_on_commit_publish(tmp_path):
    marker = tmp_path / "blocked"
    log_path = tmp_path / "daphne.log"
    env = server_env(BLOCKED_PUBLISH_MARKER=str(marker), RUN_LOOPS_IN_PROCESS="true", SIMULATOR_ENABLED="false")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(free_port()), "tests.asgi_blocked_publish:application"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the loop never reached its publish:\n" + log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        time.sleep(0.3)  # the loop thread now waits in the publish

        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # as a process manager stops it: the process, not its group
        try:
            code = proc.wait(timeout=EXIT_BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(f"daphne did not exit within {EXIT_BOUND}s of SIGTERM:\n" + log_path.read_text(errors="replace")[-3000:])
        assert code == 0, log_path.read_text(errors="replace")[-3000:]
        assert time.monotonic() - stopped_at < EXIT_BOUND
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
