"""Many concurrent ``token_get`` callers in one process, against a KIS-style
``/oauth2/tokenP`` server: run as a subprocess by the token singleflight test
and by ``bench/kis_token_bench.py``.

    python -m tests.token_callers --url URL --app-key K --app-secret S --threads 50

Prints "ready" once its threads wait, then reads a start time (unix seconds)
from stdin: a barrier across processes (``run_callers`` sends every process
the same one once all are ready). At that time every thread calls
``token_get`` once, closes its database connection and records how long the
call took. Prints one JSON line: ``{"latencies": [...], "values": [...],
"errors": [...], "start_at": ..., "last_finished_at": ...}``.

    python -m tests.token_callers --hold-lock NAME --seconds 10

holds a named lock from another process (prints "held" once it has it), and

    python -m tests.token_callers --pace KEY --calls 10 --rate 10

makes paced calls on one bucket from the common start (same barrier).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import django
import requests


def kis_token_issuer(url: str, app_key: str, app_secret: str, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """``issue`` for ``token_get``: KIS's access-token request, as documented."""
    from django.utils import timezone

    from brokers.base import BrokerRejected
    from brokers.tokens import IssuedToken

    def issue() -> IssuedToken:
        body = {"grant_type": "client_credentials", "appkey": app_key, "appsecret": app_secret}
        response = requests.post(url.rstrip("/") + "/oauth2/tokenP", json=body, timeout=timeout)
        data = response.json()
        if response.status_code != 200 or "access_token" not in data:
            raise BrokerRejected(f"token issue refused: {data.get('error_code', response.status_code)}")
        return IssuedToken(value=data["access_token"], expires_at=timezone.now() + timedelta(seconds=int(data["expires_in"])))

    return issue


def run_callers(
    url: str, app_key: str, app_secret: str, *, processes: int = 4, threads: int = 50, env: dict[str, str], cwd: str
) -> list[dict]:  # type: ignore[type-arg]
    """Start ``processes`` caller processes of ``threads`` threads each, release
    them at one moment, and return each process's results."""
    command = [sys.executable, "-m", "tests.token_callers", "--url", url, "--app-key", app_key, "--app-secret", app_secret]
    command += ["--threads", str(threads)]
    return run_together([command] * processes, env=env, cwd=cwd)


def run_together(commands: list[list[str]], *, env: dict[str, str], cwd: str) -> list[dict]:  # type: ignore[type-arg]
    """Start one process per command, wait until each printed "ready", send
    them all one start time, and return the JSON each printed last."""
    procs = [
        subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a caller process did not start: {proc.stderr.read()[-2000:] if proc.stderr else line}")
        start_at = time.time() + 0.3
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start_at}\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"a caller process failed: {err[-2000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)


def pace_calls(key: str, calls: int, rate: float) -> None:
    """``calls`` paced calls on ``key`` from the common start; prints their times."""
    from brokers.pacing import pace

    print("ready", flush=True)
    time.sleep(max(0.0, float(sys.stdin.readline() or 0) - time.time()))
    times = []
    for _ in range(calls):
        pace(key, rate=rate, burst=1, max_wait=10.0)
        times.append(time.time())
    json.dump({"times": times}, sys.stdout)
    sys.stdout.write("\n")


def hold_lock(name: str, seconds: float, ttl: float) -> None:
    """Hold ``named_lock(name)``; print "held" once it is held."""
    from brokers.locks import named_lock

    with named_lock(name, ttl=ttl, wait=30):
        print("held", flush=True)
        time.sleep(seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold-lock", help="hold this named lock instead of calling token_get")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--ttl", type=float, default=60.0)
    parser.add_argument("--pace", help="make paced calls on this bucket instead of calling token_get")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--url")
    parser.add_argument("--app-key")
    parser.add_argument("--app-secret")
    parser.add_argument("--environment", default="paper")
    parser.add_argument("--threads", type=int, default=50)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    if args.hold_lock:
        hold_lock(args.hold_lock, args.seconds, args.ttl)
        return
    if args.pace:
        pace_calls(args.pace, args.calls, args.rate)
        return
    from django.db import connection

    from brokers.tokens import TokenKey, token_get

    key = TokenKey(kind="kis", environment=args.environment, credential=args.app_key, name="access_token")
    issue = kis_token_issuer(args.url, args.app_key, args.app_secret)
    latencies: list[float] = []
    values: list[str] = []
    errors: list[str] = []
    finished: list[float] = []
    lock = threading.Lock()
    go = threading.Event()
    start_at = [0.0]

    def call() -> None:
        go.wait(timeout=120)
        time.sleep(max(0.0, start_at[0] - time.time()))
        started = time.perf_counter()
        try:
            value = token_get(key, issue)
        except Exception as exc:
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
            return
        finally:
            connection.close()
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)
            values.append(value)
            finished.append(time.time())

    threads = [threading.Thread(target=call) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    start_at[0] = float(sys.stdin.readline() or 0)
    go.set()
    for thread in threads:
        thread.join(timeout=120)
    result = {"latencies": latencies, "values": sorted(set(values)), "errors": errors, "start_at": start_at[0]}
    result["last_finished_at"] = max(finished, default=start_at[0])
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
