"""Real server processes for tests: daphne (and, in the production mode, a
Celery worker) started as subprocesses on the test database, bound to
127.0.0.1 only, stopped by the fixtures that started them."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A free port on 127.0.0.1: any, or one of ``TEST_PORTS`` (``24000-24999``)
    when set, so runs sharing a machine keep to their own ranges."""
    low, _, high = os.environ.get("TEST_PORTS", "").partition("-")
    candidates = random.sample(range(int(low), int(high) + 1), int(high) + 1 - int(low)) if high else [0]
    for candidate in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError(f"no free port in TEST_PORTS={os.environ['TEST_PORTS']}")


def closed_port() -> int:
    """A port nothing listens on (bound then released)."""
    return free_port()


def test_database_url() -> str:
    """DATABASE_URL of the test database pytest-django created."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def server_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        {
            "DATABASE_URL": test_database_url(),
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            "BROKER_ENCRYPTION_KEYS": ",".join(settings.BROKER_ENCRYPTION_KEYS),
            "RUN_LOOPS_IN_PROCESS": "true",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
        env["CHANNEL_LAYER_PREFIX"] = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    env.update(overrides)
    return env


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    url: str
    port: int
    log_path: Path

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/ws"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


def _wait_http(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-5000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server did not answer {url} in {timeout}s:\n{log_path.read_text(errors='replace')[-5000:]}")


def _wait_log(proc: subprocess.Popen, log_path: Path, text: str, name: str, timeout: float = 60.0) -> None:
    """Until ``proc`` has logged ``text`` (it has started)."""
    deadline = time.monotonic() + timeout
    while text not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{log_path.read_text(errors='replace')[-5000:]}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def _run_web(tmp_dir: Path, name: str, command: list[str], port: int, env_overrides: dict[str, str]) -> Iterator[ServerProcess]:
    """``command`` serving on ``port``, once it answers its health check."""
    from core.static_files import collect_if_stale

    collect_if_stale()  # the pages name the collected, hashed files: never a stale copy of them
    log_path = tmp_dir / f"{name}-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=server_env(**env_overrides), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = ServerProcess(proc=proc, url=f"http://127.0.0.1:{port}", port=port, log_path=log_path)
    try:
        _wait_http(f"{server.url}/api/v1/health/live", proc, log_path)
        yield server
    finally:
        _stop(proc)


@contextlib.contextmanager
def run_daphne(tmp_dir: Path, port: int | None = None, **env_overrides: str) -> Iterator[ServerProcess]:
    """daphne on ``port`` (a free one by default; a given one to restart a server where its clients are)."""
    port = port or free_port()
    command = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    with _run_web(tmp_dir, "daphne", command, port, env_overrides) as server:
        yield server


@contextlib.contextmanager
def run_uvicorn(tmp_dir: Path, *args: str, **env_overrides: str) -> Iterator[ServerProcess]:
    """uvicorn as the Procfile's ``web`` line runs it (``args`` appended)."""
    port = free_port()
    command = [str(BIN / "uvicorn"), "config.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--loop", "uvloop", "--http", "httptools", "--ws", "websockets", "--lifespan", "off", "--no-access-log", *args]
    with _run_web(tmp_dir, "uvicorn", command, port, env_overrides) as server:
        yield server


@contextlib.contextmanager
def run_loops(tmp_dir: Path, *names: str, log_name: str = "run-loops", **env_overrides: str) -> Iterator[ServerProcess]:
    """``manage.py run_loops`` (the Procfile's ``marketdata`` process), only the
    loops ``names`` when given, once its loops run; ``url``/``port`` are unused
    (it serves nothing)."""
    log_path = tmp_dir / f"{log_name}.log"
    command = [sys.executable, "manage.py", "run_loops", *(["--only", ",".join(names)] if names else [])]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=server_env(**{"RUN_LOOPS_IN_PROCESS": "false", "LOG_LEVEL": "INFO", **env_overrides}),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_log(proc, log_path, "run_loops running", "run_loops")  # logged at INFO
        yield ServerProcess(proc=proc, url="", port=0, log_path=log_path)
    finally:
        _stop(proc)


@contextlib.contextmanager
def run_celery_worker(tmp_dir: Path, **env_overrides: str) -> Iterator[subprocess.Popen]:
    """A worker with a result backend (production has none): ``worker_ping``
    reads a result to know the worker has run everything sent before it."""
    log_path = tmp_dir / "celery-worker.log"
    env_overrides.setdefault("CELERY_RESULT_BACKEND", settings.REDIS_URL)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "celery"), "-A", "config", "worker", "--pool=solo", "--loglevel=INFO", "--without-gossip", "--without-mingle"],
            cwd=ROOT,
            env=server_env(CELERY_TASK_ALWAYS_EAGER="false", **env_overrides),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_log(proc, log_path, "ready.", "celery worker")
        yield proc
    finally:
        _stop(proc)


def worker_ping(timeout: float = 30.0) -> str:
    """Send ``core.ping`` asking for its result and read it from Redis: the
    worker of ``run_celery_worker`` (one task at a time, in order) has then
    run every task sent before."""
    from celery.backends.redis import RedisBackend

    from config.celery import app
    from core.tasks import ping

    backend = RedisBackend(app=app, url=settings.REDIS_URL)
    sent = ping.apply_async(ignore_result=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = backend.get_task_meta(sent.id)
        if meta["status"] == "SUCCESS":
            return meta["result"]
        time.sleep(0.1)
    raise TimeoutError(f"no result of core.ping {sent.id} in {timeout}s")


# A test that starts its own redis-server: on a workstation without one it
# skips; in CI (CI set) it runs and fails, never a silent skip.
needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None and not os.environ.get("CI"), reason="redis-server is not installed (in CI: fails)"
)


@contextlib.contextmanager
def run_redis_server(port: int, workdir: Path) -> Iterator[subprocess.Popen]:
    """A private redis-server on 127.0.0.1:<port>, never the shared one."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() != "PONG":
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("private redis-server did not start")
        time.sleep(0.05)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
