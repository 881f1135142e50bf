"""Production processes for real: a Celery worker on the Redis broker, and the
whole Procfile under honcho. Only in the production mode (REDIS_URL set)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.servers import BIN, ROOT, free_port, server_env, worker_ping

pytestmark = [
    pytest.mark.skipif(not settings.REDIS_URL, reason="production mode only (REDIS_URL unset: embedded default)"),
    pytest.mark.redis,
    pytest.mark.server,
]


@pytest.mark.django_db(transaction=True)
def test_celery_worker_runs_the_ping_task(celery_worker_process):
    assert worker_ping() == "pong"


def _killpg(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


@pytest.mark.django_db(transaction=True)
def test_procfile_under_honcho_serves_ready_and_stops(tmp_path):
    port = free_port()
    empty_env_file = tmp_path / "empty.env"  # ignore a developer's .env
    empty_env_file.write_text("")
    env = server_env(RUN_LOOPS_IN_PROCESS="false", VAR_DIR=str(tmp_path), LOG_LEVEL="INFO", CELERY_CONCURRENCY="1")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PORT", None)
    log_path = tmp_path / "honcho.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "honcho"), "start", "-f", str(ROOT / "Procfile"), "-e", str(empty_env_file), "-p", str(port), "--no-colour"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output() -> str:
        return Path(log_path).read_text(errors="replace")

    # What each process says once it is really up, not merely spawned.
    up_markers = {"web": None, "worker": "ready.", "beat": "beat: Starting", "marketdata": "run_loops running"}
    ready = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(requests.RequestException):
                response = requests.get(f"http://127.0.0.1:{port}/api/v1/health/ready", timeout=5)
                if response.status_code == 200:
                    ready = response.json()
            lines = output().splitlines()
            if ready and all(
                marker is None or any(f"{name}.1" in line and marker in line for line in lines) for name, marker in up_markers.items()
            ):
                break
            time.sleep(0.5)
        assert ready is not None, f"the Procfile did not get ready in 60 s:\n{output()[-5000:]}"
        assert ready["status"] == "ok"
        for name, marker in up_markers.items():
            assert f"{name}.1 started (pid=" in output(), output()[-5000:]
            if marker:
                assert any(f"{name}.1" in line and marker in line for line in output().splitlines()), output()[-5000:]
        assert " stopped (rc=" not in output(), output()[-5000:]
        assert proc.poll() is None
    finally:
        children = [int(pid) for pid in re.findall(r"started \(pid=(\d+)\)", output())]
        _killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        # honcho starts each process in its own session; make sure none outlives the test.
        for pid in children:
            _killpg(pid, signal.SIGKILL)

    assert proc.returncode is not None
    assert "SIGTERM received" in output()
