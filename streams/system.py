"""The ``system`` channel: server status and time, a heartbeat users can watch.

It is a latest-value channel; its sequence is the server time in milliseconds,
so every process that publishes it agrees on the order without shared state.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from accounts.models import User
from core.loops import register_loop, registered_loops
from streams.publish import apublish
from streams.registry import ChannelHandler, register_channel

CHANNEL = "system"


def _status() -> tuple[int, dict[str, Any]]:
    now = time.time()
    loops = {
        name: {"iterations": loop.iterations, "errors": loop.errors}
        for name, loop in registered_loops().items()
        if loop.last_run_at is not None
    }
    return int(now * 1000), {"status": "ok", "version": settings.VERSION, "server_time": now, "loops": loops}


class SystemChannel(ChannelHandler):
    prefix = CHANNEL
    latest_value = True
    description = "Server status and time, updated every SYSTEM_STATUS_INTERVAL seconds."

    async def authorize(self, *, user: User, channel: str) -> None:
        from core.exceptions import InvalidInput

        if channel != CHANNEL:
            raise InvalidInput(f"Unknown channel '{channel[:100]}'.", code="unknown_channel", fields={"channel": ["Unknown channel."]})

    async def snapshot(self, *, user: User, channel: str) -> tuple[int, Any]:
        return _status()

    def asyncapi_channels(self) -> dict[str, Any]:
        return {
            CHANNEL: {
                "description": self.description,
                "subscribe": {
                    "message": {
                        "name": "system",
                        "payload": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "string", "enum": ["ok"]},
                                "version": {"type": "string"},
                                "server_time": {"type": "number", "description": "unix seconds"},
                                "loops": {"type": "object"},
                            },
                        },
                    }
                },
            }
        }


async def publish_status() -> None:
    seq, data = _status()
    await apublish(CHANNEL, seq, data, latest=True)


register_channel(SystemChannel())
register_loop("system.status", publish_status, interval=lambda: settings.SYSTEM_STATUS_INTERVAL)
