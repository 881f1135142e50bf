"""The embedded server's ASGI app plus one loop whose on-commit publish never
completes (the channel layer stops answering), for the shutdown test."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction

from config.asgi import application  # noqa: F401 - what daphne serves
from core import loops
from streams.publish import publish_on_commit

MARKER = Path(os.environ["BLOCKED_PUBLISH_MARKER"])


async def _never_answers(*args: Any, **kwargs: Any) -> None:
    MARKER.write_text("blocked")
    await asyncio.Event().wait()


def _publish_after_commit() -> None:
    # On the class: with Redis, sync publishes go through the process's own layer instance.
    type(get_channel_layer()).group_send = _never_answers  # type: ignore[method-assign]
    with transaction.atomic():
        publish_on_commit("system", 1, {"status": "ok"})


loops.register_loop("blocked_publish", _publish_after_commit, interval=3600)
