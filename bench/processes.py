"""What the benchmarks share about the servers they start: waiting until one
answers, and the settings that keep an order benchmark's server on the path
it measures."""

from __future__ import annotations

import http.client
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

# An order benchmark's server: loops in process, no periodic work or bar
# broadcasting to compete with the orders, and no limit in the orders' way.
ORDER_SERVER_ENV = {
    "RUN_LOOPS_IN_PROCESS": "true",
    "BAR_BROADCASTER_ENABLED": "false",
    "OMS_SWEEP_INTERVAL": "3600",
    "OMS_RECONCILE_INTERVAL": "3600",
    "OMS_MARKS_INTERVAL": "3600",
    "RISK_MAX_ORDERS_PER_SECOND": "0",
    "THROTTLE_USER": "100000000/min",
    "THROTTLE_ORDERS": "100000000/min",
    "LOG_LEVEL": "WARNING",
}


def wait_http(url: str, proc: subprocess.Popen, log: Path, *, timeout: float = 60.0) -> None:
    """Wait until ``url`` gives any HTTP answer; raise with the log's tail when
    the process exits or ``timeout`` seconds pass (the process killed then)."""
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=2)
            conn.request("GET", parts.path or "/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{url} did not answer: {log.read_text(errors='replace')[-3000:]}")
