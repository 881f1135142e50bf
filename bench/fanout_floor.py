"""The fan-out benchmark's floor: no framework. One Redis pub/sub subscription
and a plain ``websockets`` server that writes each pre-encoded frame, as
received, to every connected client (``websockets.broadcast``: no per-client
task, no await per client).

    python bench/fanout_floor.py PORT REDIS_URL CHANNEL
"""

from __future__ import annotations

import sys

import redis.asyncio as redis
import uvloop
import websockets
from websockets.asyncio.server import ServerConnection, broadcast, serve


async def main(port: int, redis_url: str, channel: str) -> None:
    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            await ws.send('{"type":"ready"}')
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass
        finally:
            clients.discard(ws)

    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    async with serve(handler, "127.0.0.1", port, max_queue=None):
        print("listening", flush=True)
        async for message in pubsub.listen():
            if message["type"] == "message":
                broadcast(clients, message["data"].decode())


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
