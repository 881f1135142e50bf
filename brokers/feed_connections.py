"""What every broker WebSocket feed provider does the same way (KIS, Kite):
re-plan its connections now and then, open those whose lease it wins (one
process per connection across processes), renew the leases, write each
connection's state at once when it changes and every few seconds anyway,
and run the sockets on one event loop in a daemon thread, with a small pool
for the blocking calls (database, broker REST) their frames trigger.

A provider subclasses ``LeasedFeedProvider`` with ``plan()`` (the wanted
connections, each with a ``key`` and the ``accounts`` it reports to) and
``connection_for(plan, executor)`` (and ``replaces(connection, plan)`` when
a changed plan needs another kind of connection); a connection has ``plan``, ``lease``,
``feed``, ``task``, ``label``, ``run()``, ``set_plan(plan)``,
``signature()`` and ``state_write()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections

from brokers.health import feed_state_clear
from brokers.locks import lease_acquire
from marketdata.feeds.base import Feed

logger = logging.getLogger(__name__)

LEASE_TTL = 30.0
STATE_REFRESH = 5.0  # seconds between feed-state writes and lease renewals
CALL_WORKERS = 2  # blocking calls off the sockets' loop


def in_worker(func: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking call on the provider's pool with a fresh database
    connection, given back afterwards (a pool thread lives long: a
    connection it kept would go stale between calls)."""
    close_old_connections()
    try:
        return func(*args)
    finally:
        close_old_connections()


async def connection_cancel(connection: Any) -> None:
    task = connection.task
    if task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=2.0)


class LeasedFeedProvider:
    name = ""
    source = ""
    lease_prefix = ""  # the lease's name is this plus the plan's key
    thread_name = ""

    def __init__(self) -> None:
        self.connections: dict[str, Any] = {}
        self._futures: dict[str, concurrent.futures.Future[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._planned_at = float("-inf")
        self._state_at = float("-inf")
        self._reported: dict[str, tuple[object, ...]] = {}
        self._lock = threading.Lock()

    # --- what a provider says -----------------------------------------------------------------

    def reload_interval(self) -> float:
        raise NotImplementedError

    def plan(self) -> list[Any]:
        raise NotImplementedError

    def connection_for(self, plan: Any, executor: concurrent.futures.Executor) -> Any:
        raise NotImplementedError

    def replaces(self, connection: Any, plan: Any) -> bool:
        """Whether ``plan`` needs a new connection rather than ``set_plan`` on the running one."""
        return False

    # --- the market-data loop's calls ---------------------------------------------------------------

    def feeds(self) -> list[Feed]:
        now = time.monotonic()
        with self._lock:
            if now - self._planned_at >= self.reload_interval():
                self._planned_at = now
                self._reconcile(self.plan())
            if now - self._state_at >= STATE_REFRESH:
                self._state_at = now
                self._renew_and_report()
            else:  # a change (connected, subscribed, failed) is written at once
                for key, connection in self.connections.items():
                    if self._reported.get(key) != connection.signature():
                        self._report(key, connection)
            return [connection.feed for connection in self.connections.values()]

    def replan(self) -> None:
        """Re-read accounts and instruments at the next poll."""
        self._planned_at = float("-inf")

    def stop(self) -> None:
        """Close every connection and the loop thread (bounded)."""
        with self._lock:
            for key in list(self.connections):
                self._stop_connection(key, clear=True)
            loop, thread, executor = self._loop, self._thread, self._executor
            self._loop = self._thread = self._executor = None
            self._planned_at = float("-inf")
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=3.0)
        if loop is not None and thread is not None and not thread.is_alive():
            loop.close()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # --- inside -------------------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, name=self.thread_name, daemon=True)
            self._thread.start()
            self._loop = loop
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=CALL_WORKERS, thread_name_prefix=f"{self.thread_name}-call")
        return self._loop

    def _reconcile(self, plans: list[Any]) -> None:
        wanted = {plan.key: plan for plan in plans}
        for key in list(self.connections):
            if key not in wanted:
                self._stop_connection(key, clear=True)
        for key, plan in wanted.items():
            connection = self.connections.get(key)
            if connection is not None and self.replaces(connection, plan):
                self._stop_connection(key, clear=False)
                connection = None
            if connection is not None:
                if connection.plan != plan:
                    gone = {a.account_id for a in connection.plan.accounts} - {a.account_id for a in plan.accounts}
                    assert self._loop is not None
                    self._loop.call_soon_threadsafe(connection.set_plan, plan)
                    for account_id in gone:
                        feed_state_clear(account_id)
                continue
            lease = lease_acquire(f"{self.lease_prefix}{key}", ttl=LEASE_TTL)
            if lease is None:
                continue  # another process holds this connection
            loop = self._ensure_loop()
            assert self._executor is not None
            connection = self.connection_for(plan, self._executor)
            connection.lease = lease
            self.connections[key] = connection
            self._futures[key] = asyncio.run_coroutine_threadsafe(connection.run(), loop)

    def _renew_and_report(self) -> None:
        for key, connection in list(self.connections.items()):
            if connection.lease is None or not connection.lease.renew():
                logger.warning("%s feed %s: lease lost, closing", self.name, connection.label)
                self._stop_connection(key, clear=False)
                continue
            self._report(key, connection)

    def _report(self, key: str, connection: Any) -> None:
        # The signature is taken before the write: the socket thread may change the
        # state while it is written, and a change then differs at the next poll.
        signature = connection.signature()
        try:
            connection.state_write()
            self._reported[key] = signature
        except Exception:
            logger.exception("%s feed state not written", self.name)

    def _stop_connection(self, key: str, *, clear: bool, timeout: float = 3.0) -> None:
        connection = self.connections.pop(key, None)
        self._futures.pop(key, None)
        self._reported.pop(key, None)
        if connection is None:
            return
        if self._loop is not None and self._loop.is_running():
            # Cancel on the connection's loop and wait for the socket to close.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(connection_cancel(connection), self._loop).result(timeout=timeout)
        if connection.lease is not None:
            connection.lease.release()
        if clear:
            for account in connection.plan.accounts:
                feed_state_clear(account.account_id)
