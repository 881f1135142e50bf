"""Replacing a broker kind's registered hooks for the length of a block, and
putting back whatever was registered before (the real adapter's, usually)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from brokers import registry

_ABSENT = object()


@contextlib.contextmanager
def token_hooks(kind: str, *, keys: Callable[..., Any] | None | object = _ABSENT, refresher: Any = _ABSENT) -> Iterator[None]:
    """Register ``keys``/``refresher`` for ``kind`` (None: none at all) during the block."""
    before_keys, before_refresher = registry.token_keys_provider(kind), registry.token_refresher(kind)
    try:
        if keys is not _ABSENT:
            _set(registry.register_token_keys, registry.unregister_token_keys, kind, keys)
        if refresher is not _ABSENT:
            _set(registry.register_token_refresher, registry.unregister_token_refresher, kind, refresher)
        yield
    finally:
        _set(registry.register_token_keys, registry.unregister_token_keys, kind, before_keys)
        _set(registry.register_token_refresher, registry.unregister_token_refresher, kind, before_refresher)


def _set(register: Callable[..., None], unregister: Callable[[str], None], kind: str, hook: Any) -> None:
    if hook is None:
        unregister(kind)
    else:
        register(kind, hook)
