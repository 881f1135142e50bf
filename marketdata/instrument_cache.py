"""What a history request needs about an instrument (the row: symbol,
timezone, session; and which resolutions it stores besides 1-minute), cached
per process so a history request costs the bar query alone.

Invalidation: every write of an instrument, and every import of bars at a
resolution other than 1 minute, clears this process's cache at once and again
after commit, and then changes a generation stamp in the shared cache (Redis in
production). Every process compares its stamp with the shared one at most once
per ``CHECK_EVERY`` seconds, so another process sees a change within that time.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import transaction

GENERATION_KEY = "md:instruments:generation"
CHECK_EVERY = 1.0
MAX_ENTRIES = 4096

T = TypeVar("T")

_lock = threading.Lock()
_entries: dict[str, Any] = {}
_state: dict[str, Any] = {"generation": None, "checked_at": -CHECK_EVERY, "version": 0}


def _clear_local() -> None:
    with _lock:
        _entries.clear()
        _state["version"] += 1  # a load begun before this is not stored


def _bump() -> None:
    _clear_local()
    cache.set(GENERATION_KEY, uuid.uuid4().hex, timeout=None)


def instruments_changed() -> None:
    """An instrument (or the resolutions it stores) changed: forget it here now,
    and everywhere once the transaction commits."""
    _clear_local()
    transaction.on_commit(_bump)


def instrument_cache_clear() -> None:
    """Forget everything in this process (tests)."""
    _clear_local()
    _state["checked_at"] = -CHECK_EVERY


def _check_generation() -> None:
    now = time.monotonic()
    if now - _state["checked_at"] >= CHECK_EVERY:
        try:
            generation = cache.get(GENERATION_KEY)
        except Exception:  # the shared cache is down: trust nothing kept
            generation = uuid.uuid4().hex
        if generation != _state["generation"]:
            _clear_local()
            _state["generation"] = generation
        _state["checked_at"] = now


def instruments_version() -> int:
    """A number that changes (in this process) whenever an instrument may have
    changed here or, within ``CHECK_EVERY`` seconds, in any process: holders of
    their own per-symbol state (the simulator loop, the bar broadcaster) reload
    when it moves, so a renamed instrument's state follows it."""
    _check_generation()
    return int(_state["version"])


def cached(name: str, load: Callable[[str], T]) -> T:
    """The entry for ``name``, loaded by ``load`` when this process has none.
    A ``load`` that raises caches nothing (unknown names are never stored)."""
    _check_generation()
    entry = _entries.get(name)
    if entry is None:
        version = _state["version"]
        entry = load(name)
        with _lock:
            if version == _state["version"]:
                if len(_entries) >= MAX_ENTRIES:
                    _entries.clear()
                _entries[name] = entry
    return entry  # type: ignore[no-any-return]
