"""Periodic loops: the simulator, paper matching, broadcasters, sweepers.

Apps register loops in ``AppConfig.ready()``. The same loop code runs inside
the daphne process on the embedded default (``RUN_LOOPS_IN_PROCESS``) and in the
``marketdata`` process (``manage.py run_loops``) in production.

A loop function is sync (run in a worker thread, so it may use the ORM) or a
coroutine function. A failing iteration is logged and counted; the loop goes on.

Stopping never hangs: the worker threads are daemons (one stuck in an iteration
cannot keep the process alive), ``stop_all`` waits for running iterations only
``STOP_TIMEOUT`` seconds, and async work an iteration hands to the event loop
(a publish) is waited for with a timeout (``run_in_event_loop``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

logger = logging.getLogger(__name__)

LoopFunc = Callable[[], object] | Callable[[], Awaitable[object]]
T = TypeVar("T")

STOP_TIMEOUT = 5.0  # seconds stop_all waits for iterations still running


@dataclass
class Loop:
    name: str
    func: LoopFunc
    interval: Callable[[], float]
    iterations: int = 0
    errors: int = 0
    last_run_at: float | None = None
    last_error: str = ""
    # Called (sync, bounded by the caller) when ``stop_all`` stops the loop:
    # a loop holding connections of its own (broker feeds) closes them.
    on_stop: Callable[[], object] | None = None
    _is_async: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._is_async = inspect.iscoroutinefunction(self.func)


_registry: dict[str, Loop] = {}
_tasks: dict[str, asyncio.Task] = {}


def register_loop(name: str, func: LoopFunc, *, interval: float | Callable[[], float], on_stop: Callable[[], object] | None = None) -> Loop:
    """Register (or replace) a loop. ``interval`` in seconds, or a callable
    read on each iteration so a setting change in tests takes effect;
    ``on_stop`` runs when ``stop_all`` stops it."""
    loop = Loop(name=name, func=func, interval=interval if callable(interval) else partial(float, interval), on_stop=on_stop)
    _registry[name] = loop
    return loop


def registered_loops() -> dict[str, Loop]:
    return dict(_registry)


def is_running(name: str) -> bool:
    """Whether this process runs the loop ``name`` now."""
    task = _tasks.get(name)
    return task is not None and not task.done()


class _DaemonThreadPool(concurrent.futures.Executor):
    """Runs the sync loops' iterations, one thread per iteration running at a
    time, reused. Unlike ThreadPoolExecutor's, its threads are daemons, which
    the interpreter does not join at exit."""

    def __init__(self, max_workers: int = 32) -> None:
        self._work: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._max_workers = max_workers

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._work.put((future, partial(fn, **kwargs) if kwargs else fn, args))
        with self._lock:
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                thread = threading.Thread(target=self._worker, name=f"loop-worker-{len(self._threads)}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return future

    def _worker(self) -> None:
        while True:
            future, fn, args = self._work.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)
            del future, fn, args
            self._idle.release()


# One single-thread pool per loop. A loop's iterations never overlap, and on
# one thread what an iteration allocates is freed into, and reused from, that
# thread's malloc arena. Handed round a shared pool, each thread an iteration
# of the simulator had run on kept its working set (the day paths: about 40 MB
# of arrays) in its own arena: the marketdata process grew by that much per
# pool thread over a soak.
_executors: dict[str, _DaemonThreadPool] = {}
_executors_lock = threading.Lock()


def _executor_for(name: str) -> _DaemonThreadPool:
    with _executors_lock:
        executor = _executors.get(name)
        if executor is None:
            executor = _executors[name] = _DaemonThreadPool(max_workers=1)
        return executor


_thread_state = threading.local()


def _run_sync(func: Callable[[], object], event_loop: asyncio.AbstractEventLoop) -> object:
    _thread_state.event_loop = event_loop
    close_old_connections()
    try:
        return func()
    finally:
        close_old_connections()
        _thread_state.event_loop = None


def run_in_event_loop(coro: Coroutine[Any, Any, T], *, timeout: float) -> T:
    """From a sync loop iteration: run ``coro`` on the event loop that runs the
    loops and wait at most ``timeout`` seconds (TimeoutError). That loop stops
    when the server does, so a plain async_to_sync could wait forever.
    Elsewhere (no loop iteration on this thread): async_to_sync."""
    event_loop: asyncio.AbstractEventLoop | None = getattr(_thread_state, "event_loop", None)
    if event_loop is None:
        from asgiref.sync import async_to_sync

        async def run() -> T:
            return await coro

        return async_to_sync(run)()
    if not event_loop.is_running():
        coro.close()
        raise TimeoutError("the event loop has stopped")
    future = asyncio.run_coroutine_threadsafe(coro, event_loop)
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"not done within {timeout:g}s") from None


async def run_once(loop: Loop) -> None:
    try:
        if loop._is_async:
            await loop.func()  # type: ignore[misc]
        else:
            # thread_sensitive=False: loops must not queue behind request handlers.
            # (asgiref annotates a ThreadPoolExecutor; it only hands it to run_in_executor, which takes any Executor.)
            run = sync_to_async(_run_sync, thread_sensitive=False, executor=_executor_for(loop.name))  # type: ignore[call-overload]
            await run(loop.func, asyncio.get_running_loop())
        loop.iterations += 1
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        loop.errors += 1
        loop.last_error = f"{type(exc).__name__}: {exc}"
        logger.exception("loop %s failed", loop.name, extra={"loop": loop.name})
    finally:
        loop.last_run_at = time.time()


async def run_forever(loop: Loop) -> None:
    while True:
        started = time.monotonic()
        await run_once(loop)
        await asyncio.sleep(max(0.0, loop.interval() - (time.monotonic() - started)))


def start_in_process(names: list[str] | None = None) -> list[str]:
    """Start registered loops on the running event loop; idempotent."""
    started = []
    for name, loop in _registry.items():
        if names is not None and name not in names:
            continue
        task = _tasks.get(name)
        if task is not None and not task.done():
            continue
        _tasks[name] = asyncio.get_running_loop().create_task(run_forever(loop), name=f"loop:{name}")
        started.append(name)
    if started:
        logger.info("loops started: %s", ", ".join(started))
    return started


async def stop_all(timeout: float | None = STOP_TIMEOUT) -> None:
    """Cancel every loop and wait (at most ``timeout``) for iterations still
    running in worker threads; the event loop keeps serving meanwhile, so what
    they hand it (publishes) completes. A thread still stuck after that is a
    daemon and does not keep the process alive."""
    # Tasks of an event loop that is already closed (a finished asyncio.run) are gone.
    tasks = [task for task in _tasks.values() if not task.get_loop().is_closed()]
    stopped = [_registry[name] for name in _tasks if name in _registry]
    _tasks.clear()
    for task in tasks:
        task.cancel()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        if pending:
            logger.warning("loops still running after %ss, left behind: %s", timeout, ", ".join(t.get_name() for t in pending))
            with _executors_lock:
                for task in pending:
                    # Its thread is still busy: a restarted loop gets a thread of its own.
                    _executors.pop(task.get_name().removeprefix("loop:"), None)
    for loop in stopped:
        if loop.on_stop is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(loop.on_stop), timeout=timeout)
            except Exception:
                logger.exception("stopping loop %s failed", loop.name, extra={"loop": loop.name})
