"""Periodic loops: the simulator, paper matching, broadcasters, sweepers.

Apps register loops in ``AppConfig.ready()``. The same loop code runs inside
the daphne process on the embedded default (``RUN_LOOPS_IN_PROCESS``) and in the
``marketdata`` process (``manage.py run_loops``) in production.

A loop function is sync (run in a worker thread, so it may use the ORM) or a
coroutine function. A failing iteration is logged and counted; the loop goes on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from asgiref.sync import sync_to_async
from django.db import close_old_connections

logger = logging.getLogger(__name__)

LoopFunc = Callable[[], object] | Callable[[], Awaitable[object]]


@dataclass
class Loop:
    name: str
    func: LoopFunc
    interval: Callable[[], float]
    iterations: int = 0
    errors: int = 0
    last_run_at: float | None = None
    last_error: str = ""
    _is_async: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._is_async = inspect.iscoroutinefunction(self.func)


_registry: dict[str, Loop] = {}
_tasks: dict[str, asyncio.Task] = {}


def register_loop(name: str, func: LoopFunc, *, interval: float | Callable[[], float]) -> Loop:
    """Register (or replace) a loop. ``interval`` in seconds, or a callable
    read on each iteration so a setting change in tests takes effect."""
    loop = Loop(name=name, func=func, interval=interval if callable(interval) else partial(float, interval))
    _registry[name] = loop
    return loop


def registered_loops() -> dict[str, Loop]:
    return dict(_registry)


def _run_sync(func: Callable[[], object]) -> object:
    close_old_connections()
    try:
        return func()
    finally:
        close_old_connections()


async def run_once(loop: Loop) -> None:
    try:
        if loop._is_async:
            await loop.func()  # type: ignore[misc]
        else:
            # thread_sensitive=False: loops must not queue behind request handlers.
            await sync_to_async(_run_sync, thread_sensitive=False)(loop.func)
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


async def stop_all() -> None:
    tasks = list(_tasks.values())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    _tasks.clear()
