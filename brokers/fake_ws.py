"""What the fake brokers' WebSocket servers share: a ``websockets`` asyncio
server in its own thread (started and stopped from any thread), one bounded
outbox per client drained by its own sender task, a client that stops reading
dropped as a real server would, and periodic heartbeats. Each fake adds its
broker's protocol (its requests, frames and faults) on top.

Only the fakes use this: the adapters talk to a broker's server, real or fake,
with nothing of it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol, Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

Frame = str | bytes


class Client(Protocol):
    """A connected client as a fake keeps it: its socket and its outbox."""

    @property
    def ws(self) -> ServerConnection: ...

    @property
    def outbox(self) -> asyncio.Queue[Any]: ...


class FakeWsServer:
    """Subclasses give ``thread_name``, ``handle`` (one connection's life,
    usually through ``converse``), ``clients`` (the open ones, aborted at stop),
    and may give ``serve_options`` and ``background`` (tasks run while serving)."""

    thread_name = "fake-ws"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None

    # --- what a fake gives ---------------------------------------------------------------------------

    async def handle(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    def clients(self) -> Iterable[Client]:
        raise NotImplementedError

    def serve_options(self) -> dict[str, Any]:
        """Keyword arguments for ``websockets.serve`` beyond the defaults below."""
        return {}

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return []

    # --- lifecycle (any thread) ------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Self:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"{self.thread_name} did not start: {self._error}")
        return self

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def call(self, func: Callable[..., None], *args: Any) -> None:
        """Run ``func(*args)`` on the server's loop (from any thread); nothing once stopped."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(func, *args)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        options: dict[str, Any] = {"max_size": 64 * 1024, "max_queue": 64, "open_timeout": 10, "close_timeout": 2}
        async with serve(self.handle, self.host, self.port, **(options | self.serve_options())) as server:
            self._server = server
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            tasks = [asyncio.create_task(work) for work in self.background()]
            await self._stopping.wait()
            for task in tasks:
                task.cancel()
            self.abort_all()
            server.close(close_connections=False)

    # --- clients (the server's loop) -------------------------------------------------------------------

    async def converse(self, client: Client, on_text: Callable[[str], None]) -> None:
        """Serve one client until it goes: its outbox sent in order, each text
        frame it sends given to ``on_text`` (binary frames ignored)."""
        sender = asyncio.create_task(self._send_from(client))
        try:
            async for message in client.ws:
                if isinstance(message, str):
                    on_text(message)
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()

    @staticmethod
    async def _send_from(client: Client) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await client.ws.send(await client.outbox.get())

    @staticmethod
    def enqueue(client: Client, frame: Frame) -> None:
        """Queue a frame; a client whose outbox is full stopped reading: dropped, as a server would."""
        try:
            client.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            client.ws.transport.abort()

    def abort_all(self) -> None:
        """Abort every connection without a close frame (a network drop)."""
        for client in list(self.clients()):
            client.ws.transport.abort()

    @staticmethod
    async def every(interval: Callable[[], float], action: Callable[[], None]) -> None:
        """Run ``action`` every ``interval()`` seconds (0 or less: paused); short
        naps, so a changed interval applies at once."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(min(0.05, max(interval(), 0.01)))
            if interval() <= 0 or loop.time() - last < interval():
                continue
            last = loop.time()
            action()
