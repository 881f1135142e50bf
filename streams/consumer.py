"""The WebSocket gateway at ``/api/v1/ws`` (DESIGN.md "Streams").

Client frames carry ``op``, server frames ``type``. Thin: authentication,
subscriptions and heartbeats live here; channel semantics live in the handlers
apps register (``streams.registry``), commands in the OMS services.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from accounts.models import ApiKey, User
from accounts.revocation import key_group, user_group
from accounts.services import api_key_authenticate_from, credentials_valid
from core.exceptions import DomainError, Forbidden, InvalidInput, error_body
from streams import frames, upstream
from streams.delivery import Delivery, delivery_for
from streams.frames import CLOSE_FORBIDDEN_ORIGIN, CLOSE_PONG_TIMEOUT, CLOSE_UNAUTHENTICATED, StreamEvent
from streams.hub import Hub, hub_for
from streams.registry import ChannelHandler, call_handler, command_handler, handler_for
from streams.subscribers import subscriber_add

logger = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 200
MAX_FRAME_BYTES = 64 * 1024
# Open connections per endpoint, counted across processes like channel
# subscribers (``streams.subscribers``) under this prefix: GET /ws/status.
CONNECTIONS_PREFIX = "ws-connections:"


class CredentialsRevoked(DomainError):
    """Found when a command re-authorizes: the socket closes after the error frame."""

    status_code = 401
    code = "authentication_failed"
    default_message = "The credentials of this connection were revoked or expired."


@dataclass
class Subscription:
    channel: str
    handler: ChannelHandler
    delivery: Delivery  # what to send and when (streams.delivery: ordering and coalescing)
    counted: bool = False  # the handler heard on_subscribe and is owed an on_unsubscribe
    timer: asyncio.Task | None = None  # calls delivery.fire at delivery.wake_at()
    timer_at: float | None = None

    def cancel_timer(self) -> None:
        if self.timer is not None and self.timer is not asyncio.current_task():
            self.timer.cancel()
        self.timer = self.timer_at = None


def _new_subscription(channel: str, handler: ChannelHandler, *, counted: bool) -> Subscription:
    delivery = delivery_for(
        latest_value=handler.latest_value,
        flush_interval=settings.WS_MARKET_FLUSH_INTERVAL,
        gap_timeout=settings.WS_GAP_TIMEOUT,
    )
    return Subscription(channel=channel, handler=handler, delivery=delivery, counted=counted)


@dataclass(frozen=True)
class _Close:
    """Queued after the frames that must reach the client before the close."""

    code: int
    reason: str | None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _server_scheme(scope: dict[str, Any], headers: dict[str, str]) -> str:
    """The scheme a browser used to reach us: ``wss``, or a TLS-terminating
    proxy's header as Django trusts it for HTTP (``SECURE_PROXY_SSL_HEADER``)."""
    if scope.get("scheme") == "wss":
        return "https"
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        name, value = proxy
        header = name.removeprefix("HTTP_").replace("_", "-").lower()
        if headers.get(header, "").split(",")[0].strip().lower() == value.lower():
            return "https"
    return "http"


def _origin_allowed(origin: str, host: str, scheme: str = "http") -> bool:
    parsed = urlsplit(origin)
    if not parsed.scheme or not parsed.netloc:
        return False
    domain, port = split_domain_port(host)
    try:
        origin_port = parsed.port or _DEFAULT_PORTS.get(parsed.scheme.lower())
    except ValueError:
        return False
    same_origin = (
        parsed.scheme.lower() == scheme
        and (parsed.hostname or "") == domain.strip("[]")
        and origin_port == (int(port) if port else _DEFAULT_PORTS[scheme])
    )
    if same_origin and validate_host(domain, settings.ALLOWED_HOSTS):
        # Same origin (scheme, host and port) as the page that opened the socket,
        # on a host we serve (Django checks Host for HTTP only; this keeps DNS
        # rebinding out). An https page is not the origin of an http server.
        return True
    allowed = {o.rstrip("/").lower() for o in [*settings.WS_ALLOWED_ORIGINS, *settings.CSRF_TRUSTED_ORIGINS]}
    return origin.rstrip("/").lower() in allowed


def _forget_channel(layer: Any, channel_name: str) -> None:
    """Drop what the channel layer keeps in this process for a consumer's own
    channel once the consumer is gone. channels-redis buffers messages per
    channel in ``receive_buffer`` (a defaultdict) and deletes a channel's entry
    when its read is cancelled while waiting, but not when the read cancelled
    was the one fetching for every channel of the process (holding its receive
    lock): that entry, an empty queue, stayed for ever, one per connection that
    closed while it held the lock. The channel name is never used again."""
    buffers = getattr(layer, "receive_buffer", None)
    if isinstance(buffers, dict):
        buffers.pop(channel_name, None)


class GatewayConsumer(AsyncWebsocketConsumer):
    user: User | None
    api_key: ApiKey | None
    hub: Hub
    layer_down = False
    closed = False
    writer: asyncio.Task | None = None
    endpoint = "gateway"  # the name its open connections are counted under
    counted_connection = False

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        """channels' AsyncConsumer.__call__, with a channel-layer receive that
        survives the layer (Redis) going away instead of killing the socket."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self._layer_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.hub = hub_for(self.channel_layer)
        # Frames for this socket, written by one task (self._write_forever): a
        # slow reader holds up only its own queue, and is closed once it is full.
        self.outbox: collections.deque[str | _Close] = collections.deque()
        self.outbox_ready = asyncio.Event()
        self.base_send = send
        try:
            with contextlib.suppress(StopConsumer):
                await await_many_dispatch([receive, self._resilient_receive], self.dispatch)
        finally:
            _forget_channel(self.channel_layer, self.channel_name)

    async def _resilient_receive(self) -> dict[str, Any]:
        delay = 0.2
        failures = 0
        while True:
            try:
                return await self._layer_receive()
            except asyncio.CancelledError:
                raise
            except Exception:
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise asyncio.CancelledError from None  # the layer turned our cancel into its own error
                failures += 1
                if failures == 1 and not self.layer_down:
                    continue  # one failed read (a timeout) is not an outage: read again at once
                if not self.layer_down:
                    logger.warning("channel layer receive failed; updates paused", exc_info=True)
                    self.hub_down()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            await self._recover_layer()

    async def _recover_layer(self) -> None:
        """Once the layer answers again: re-join this socket's own groups (a
        restarted Redis has forgotten them). The hub re-joins the channels'
        groups and asks for fresh snapshots (``hub_back``)."""
        try:
            for group in list(self.groups_joined):
                await self.channel_layer.group_add(group, self.channel_name)
        except Exception:
            return  # still down
        self.layer_down = False

    async def connect(self) -> None:
        self.user = None
        self.api_key = None
        self.subs: dict[str, Subscription] = {}
        self.groups_joined: set[str] = set()
        self.pending_ping: dict[str, float] | None = None  # data of the unanswered ping
        self.tasks: list[asyncio.Task] = []
        self.closed = False

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.scope.get("headers", [])}
        # The upstream CCXT OMS's clients name their default account on the handshake.
        self.default_account = upstream.default_account(headers.get(upstream.ACCOUNT_HEADER))
        origin = headers.get("origin")
        if origin is not None and not _origin_allowed(origin, headers.get("host", ""), _server_scheme(self.scope, headers)):
            # Closing before accept refuses the handshake (HTTP 403).
            await self.close(code=CLOSE_FORBIDDEN_ORIGIN)
            return

        raw_key = headers.get("x-api-key")
        session_user = self.scope.get("user")
        await self.accept()
        await self._count_connection(+1)
        if raw_key is not None:
            if not await self._authenticate_key(raw_key, request_id=None):
                return
        elif origin is not None and session_user is not None and session_user.is_authenticated:
            # A session cookie counts only from an allowed browser Origin.
            self.user = session_user
            await self._watch_credentials()
            await self._send_hello(None, "session")
        else:
            self.tasks.append(asyncio.ensure_future(self._auth_deadline()))
        self.tasks.append(asyncio.ensure_future(self._heartbeat()))

    async def _count_connection(self, delta: int) -> None:
        if self.counted_connection == (delta > 0):
            return
        self.counted_connection = delta > 0
        await self._count(CONNECTIONS_PREFIX + self.endpoint, delta)

    @staticmethod
    async def _count(name: str, delta: int) -> None:
        try:
            # Redis in production: off the event loop.
            await sync_to_async(subscriber_add, thread_sensitive=False)(name, delta)
        except Exception:  # a count is not worth a connection
            logger.warning("connection count not updated", exc_info=True)

    async def disconnect(self, code: int) -> None:
        self.closed = True
        await self._count_connection(-1)
        for task in self.tasks:
            task.cancel()
        if self.writer is not None:
            self.writer.cancel()
        for sub in list(getattr(self, "subs", {}).values()):
            sub.cancel_timer()
            await self.hub.leave(sub.channel, self)
            await self._tell_handler(sub, subscribed=False)
        for group in list(getattr(self, "groups_joined", ())):
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:  # the layer may be the thing that went away
                logger.warning("group_discard failed on disconnect", exc_info=True)

    # --- sending -----------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        self._enqueue(text)

    def _enqueue(self, item: str | _Close) -> None:
        # After our close the server refuses sends, and updates keep arriving
        # until the disconnect does.
        if self.closed:
            return
        if len(self.outbox) >= settings.WS_SEND_QUEUE:
            self._close_too_slow()
            return
        if isinstance(item, _Close):
            self.closed = True
        self.outbox.append(item)
        self.outbox_ready.set()
        if self.writer is None:
            self.writer = asyncio.ensure_future(self._write_forever())

    async def _write_forever(self) -> None:
        outbox, ready, send = self.outbox, self.outbox_ready, self.base_send
        while True:
            if not outbox:
                ready.clear()
                await ready.wait()
                continue
            item = outbox.popleft()
            try:
                if isinstance(item, _Close):
                    await self.close(code=item.code, reason=item.reason)
                    return
                await send({"type": "websocket.send", "text": item})
            except Exception:  # the client went away; its disconnect follows
                self.closed = True
                return

    def _close_too_slow(self) -> None:
        """The client reads slower than its updates arrive: close it now, without
        the queued frames (it would not read them in time anyway)."""
        logger.info("closing websocket: %d frames unsent", len(self.outbox))
        self.closed = True
        self.outbox.clear()
        if self.writer is not None:
            self.writer.cancel()
        self.writer = asyncio.ensure_future(self.close(code=CLOSE_PONG_TIMEOUT, reason="too slow"))

    async def send_frame(self, frame: frames.ServerFrame | dict[str, Any]) -> None:
        await self.send_text(frames.encode(frame))

    async def send_error(self, request_id: Any, code: str, message: str, fields: dict | None = None) -> None:
        body = error_body(code, message, fields)
        if request_id is not None:
            body["error"]["request_id"] = request_id  # the id the client correlates by
        await self.send_frame({"type": "error", "request_id": request_id, "data": body})

    async def _close(self, code: int, reason: str | None = None) -> None:
        """Close once the frames queued before it are written."""
        self._enqueue(_Close(code, reason))

    # --- authentication ---------------------------------------------------------------

    async def _authenticate_key(self, raw_key: str, request_id: Any) -> bool:
        address = (self.scope.get("client") or ["unknown"])[0]
        try:
            api_key = await database_sync_to_async(api_key_authenticate_from)(raw_key=raw_key, address=address)
        except DomainError as exc:  # too many failures from this address
            await self.send_error(request_id, exc.code, exc.message)
            await self._close(CLOSE_UNAUTHENTICATED)
            return False
        if api_key is None:
            await self.send_error(request_id, "authentication_failed", "Invalid, revoked or expired API key.")
            await self._close(CLOSE_UNAUTHENTICATED)
            return False
        self.api_key = api_key
        self.user = api_key.user
        await self._watch_credentials()
        await self._send_hello(request_id, "api_key")
        return True

    async def _watch_credentials(self) -> None:
        """Join the groups a revocation is announced to (the key's and the
        user's) and, for a key that expires, close the socket when it does."""
        assert self.user is not None
        groups = [user_group(self.user.pk)] + ([key_group(self.api_key.pk)] if self.api_key else [])
        for group in groups:
            try:
                await self.channel_layer.group_add(group, self.channel_name)
            except Exception:  # the per-command check still holds without it
                logger.warning("could not join %s", group, exc_info=True)
            self.groups_joined.add(group)  # re-joined with the others after a layer outage
        if self.api_key is not None and self.api_key.expires_at is not None:
            self.tasks.append(asyncio.ensure_future(self._expire_at(self.api_key.expires_at.timestamp())))

    async def _expire_at(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - time.time()))
        await self.credentials_revoked({"type": "credentials.revoked"})

    async def credentials_revoked(self, event: dict[str, Any]) -> None:
        """The key was revoked, expired, or the user deactivated: close at once."""
        if self.closed or self.user is None:
            return
        if await self._still_authorized():
            return  # e.g. the user was re-activated meanwhile
        await self.send_error(None, "credentials_revoked", "The credentials of this connection were revoked or expired.")
        await self._close(CLOSE_UNAUTHENTICATED)

    async def _still_authorized(self) -> bool:
        assert self.user is not None
        api_key_id = self.api_key.pk if self.api_key is not None else None
        return await database_sync_to_async(credentials_valid)(user_id=self.user.pk, api_key_id=api_key_id)

    async def _send_hello(self, request_id: Any, method: str) -> None:
        assert self.user is not None
        await self.send_frame(
            {
                "type": "hello",
                "request_id": request_id,
                "data": {
                    "server_version": settings.VERSION,
                    "user": {"id": self.user.pk, "email": self.user.email},
                    "auth": method,
                    "scope": self.api_key.scope if self.api_key else "trade",
                    "heartbeat_interval": settings.WS_HEARTBEAT_INTERVAL,
                    "pong_timeout": settings.WS_PONG_TIMEOUT,
                },
            }
        )

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(settings.WS_AUTH_TIMEOUT)
        if self.user is None and not self.closed:
            await self.send_error(None, "not_authenticated", "Authenticate with X-API-Key, a session, or an auth frame.")
            await self._close(CLOSE_UNAUTHENTICATED)

    # --- heartbeat ---------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        # daphne buffers without backpressure, so a stalled reader is found by
        # the application: a ping it does not answer in time closes it.
        interval, timeout = settings.WS_HEARTBEAT_INTERVAL, settings.WS_PONG_TIMEOUT
        next_ping = time.monotonic() + interval
        while not self.closed:
            await asyncio.sleep(max(0.0, next_ping - time.monotonic()))
            data = {"ts": time.time()}
            self.pending_ping = data
            await self.send_frame({"type": "ping", "data": data})
            next_ping += interval
            await asyncio.sleep(timeout)
            if self.pending_ping is data and not self.closed:
                logger.info("closing websocket: pong timeout")
                # daphne drops close reasons, so the reason also travels as a frame.
                await self.send_error(None, "pong_timeout", f"No pong within {timeout:g}s of a ping.")
                await self._close(CLOSE_PONG_TIMEOUT, "pong timeout")
                return

    # --- receiving ---------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None or len(text_data) > MAX_FRAME_BYTES:
            await self.send_error(None, "bad_frame", "Frames are JSON text objects of at most 64 KiB.")
            return
        try:
            message = frames.decode(text_data)
        except ValueError:
            await self.send_error(None, "bad_frame", "The frame is not valid JSON.")
            return
        if upstream.is_upstream(message):
            await self._upstream_frame(message)
            return
        if not isinstance(message, dict) or not isinstance(message.get("op"), str):
            await self.send_error(None, "bad_frame", "A frame is a JSON object with an 'op'.")
            return
        op = message["op"]
        request_id = message.get("request_id")
        if op == "ping":
            await self.send_frame({"type": "pong", "request_id": request_id, "data": message.get("data")})
            return
        if op == "pong":
            # Only the echo of the outstanding ping proves the client reads what
            # we send; a blind periodic pong from a stalled reader does not.
            if self.pending_ping is not None and message.get("data") == self.pending_ping:
                self.pending_ping = None
            return
        if op == "auth":
            await self._op_auth(message, request_id)
            return
        if self.user is None:
            await self.send_error(request_id, "not_authenticated", "Send an auth frame first.")
            return
        handler = {
            "subscribe": self._op_subscribe,
            "unsubscribe": self._op_unsubscribe,
            "bars.subscribe": self._op_bars_subscribe,
            "bars.unsubscribe": self._op_bars_unsubscribe,
            "command": self._op_command,
        }.get(op)
        if handler is None:
            await self.send_error(request_id, "unknown_op", f"Unknown op '{op[:50]}'.")
            return
        try:
            await handler(message, request_id)
        except DomainError as exc:
            await self.send_error(request_id, exc.code, exc.message, exc.fields)
            if isinstance(exc, CredentialsRevoked):
                await self._close(CLOSE_UNAUTHENTICATED)
        except Exception:
            # A bug in one handler costs this request, not the connection.
            logger.exception("websocket op %s failed", op)
            await self.send_error(request_id, "internal_error", "The server failed to handle this frame.")

    async def _op_auth(self, message: dict[str, Any], request_id: Any) -> None:
        if self.user is not None:
            await self.send_error(request_id, "already_authenticated", "This connection is authenticated.")
            return
        raw_key = message.get("api_key")
        if not isinstance(raw_key, str):
            await self.send_error(request_id, "authentication_failed", "The auth frame needs an 'api_key' string.")
            await self._close(CLOSE_UNAUTHENTICATED)
            return
        await self._authenticate_key(raw_key, request_id)

    @staticmethod
    def _channel_of(message: dict[str, Any]) -> str | None:
        channel = message.get("channel")
        if isinstance(channel, str) and 0 < len(channel) <= 200:
            return channel
        return None

    async def _op_subscribe(self, message: dict[str, Any], request_id: Any) -> None:
        channel = self._channel_of(message)
        if channel is None:
            await self.send_error(request_id, "validation_error", "'channel' must be a non-empty string.", {"channel": ["Required."]})
            return
        await self.subscribe(channel, request_id)

    async def _op_unsubscribe(self, message: dict[str, Any], request_id: Any) -> None:
        channel = self._channel_of(message)
        if channel is None:
            await self.send_error(request_id, "validation_error", "'channel' must be a non-empty string.", {"channel": ["Required."]})
            return
        await self.unsubscribe(channel, request_id)

    @staticmethod
    def _bars_channel(message: dict[str, Any]) -> str | None:
        symbol, resolution = message.get("symbol"), message.get("resolution")
        if not isinstance(symbol, str) or not symbol or not isinstance(resolution, str | int) or resolution == "":
            return None
        return f"bars:{symbol}:{resolution}"

    async def _op_bars_subscribe(self, message: dict[str, Any], request_id: Any) -> None:
        channel = self._bars_channel(message)
        if channel is None:
            await self.send_error(request_id, "validation_error", "'symbol' and 'resolution' are required.")
            return
        await self.subscribe(channel, request_id)

    async def _op_bars_unsubscribe(self, message: dict[str, Any], request_id: Any) -> None:
        channel = self._bars_channel(message)
        if channel is None:
            await self.send_error(request_id, "validation_error", "'symbol' and 'resolution' are required.")
            return
        await self.unsubscribe(channel, request_id)

    async def _op_command(self, message: dict[str, Any], request_id: Any) -> None:
        result = await self._run_command({k: v for k, v in message.items() if k != "op"})
        await self.send_frame({"type": "ack", "request_id": request_id, "data": result})

    async def _authorize_trade(self, what: str) -> None:
        """A trade-scope key (or a session), re-authorized on arrival: a
        revocation in any process counts, even if its announcement to this
        socket was lost."""
        if self.api_key is not None and not self.api_key.can_trade:
            raise Forbidden(f"This API key has the read scope; {what} need the trade scope.")
        if not await self._still_authorized():
            raise CredentialsRevoked()

    async def _run_command(self, body: dict[str, Any]) -> dict[str, Any]:
        """One command envelope, as the ``command`` op runs it; a refusal raises."""
        await self._authorize_trade("commands")
        run = command_handler()
        if run is None:
            raise DomainError("Commands are not available on this server.", code="command_unavailable")
        assert self.user is not None
        return await run(self.user, self.api_key, body)

    # --- the upstream CCXT OMS's frames (streams.upstream) ----------------------------------

    async def _upstream_frame(self, message: dict[str, Any]) -> None:
        action, namespace = message["action"], message.get("namespace")
        payload = message.get("payload", {})
        if payload is None:
            payload = {}
        if action == "ping":
            # An upstream client does not know the pong op: its ping shows it is there.
            self.pending_ping = None
            await self.send_frame(upstream.response(message, event="pong", payload={}))
            return
        try:
            if not isinstance(payload, dict):
                raise InvalidInput("'payload' is an object.", fields={"payload": ["An object."]})
            if self.user is None:
                raise DomainError(
                    "Authenticate first (X-API-Key on the handshake, or an auth op frame).", code="not_authenticated", status_code=401
                )
            if action == "subscribe":
                await self._upstream_subscribe(message, payload)
            elif namespace == "position" and action == "command":
                body = {**payload, "account_id": self._upstream_account(payload)}
                result = await self._run_command(body)
                ok = bool(result.get("ok", True)) if isinstance(result, dict) else True
                await self.send_frame(upstream.response(message, event="command_result", payload=result, ok=ok))
            elif namespace == "ccxt" and action == "call":
                account_id = self._upstream_account(payload)
                run = call_handler("ccxt")
                if run is None:
                    raise DomainError("CCXT calls are not available on this server.", code="call_unavailable")
                await self._authorize_trade("pass-through calls")
                assert self.user is not None
                result = await run(self.user, account_id, {k: v for k, v in payload.items() if k != "account_id"})
                await self.send_frame(upstream.response(message, event="ccxt_result", payload={"result": result}))
            else:
                raise DomainError(
                    f"Unsupported action '{str(namespace)[:50]}/{action[:50]}': ping, subscribe, position/command, ccxt/call.",
                    code="unsupported_action",
                )
        except DomainError as exc:
            await self.send_frame(upstream.error(message, exc.code, exc.message, exc.fields))
            if isinstance(exc, CredentialsRevoked):
                await self._close(CLOSE_UNAUTHENTICATED)
        except Exception:
            logger.exception("upstream websocket frame %s failed", action[:50])
            await self.send_frame(upstream.error(message, "internal_error", "The server failed to handle this frame."))

    def _upstream_account(self, payload: dict[str, Any]) -> int:
        """``payload.account_id``, else the handshake's ``x-account-id``."""
        raw = payload.get("account_id", self.default_account)
        if raw is None:
            raise InvalidInput(
                "Name the account: the x-account-id header of the handshake, or payload.account_id.",
                code="missing_account_id",
                fields={"account_id": ["Required."]},
            )
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw < 2**63:
            raise InvalidInput("'account_id' is a positive integer.", fields={"account_id": ["A positive integer."]})
        return raw

    async def _upstream_subscribe(self, message: dict[str, Any], payload: dict[str, Any]) -> None:
        namespaces = payload.get("namespaces") or ["position"]
        if not isinstance(namespaces, list) or not all(isinstance(n, str) and n in upstream.NAMESPACE_CHANNELS for n in namespaces):
            raise InvalidInput(
                f"'namespaces' is a list of {', '.join(upstream.NAMESPACE_CHANNELS)}.", fields={"namespaces": ["Unknown namespace."]}
            )
        raw_ids = payload.get("account_ids")
        if raw_ids is None:
            ids = [self._upstream_account({})]
        elif not isinstance(raw_ids, list) or not 0 < len(raw_ids) <= upstream.MAX_SUBSCRIBE_ACCOUNTS:
            raise InvalidInput(
                f"'account_ids' is a list of 1 to {upstream.MAX_SUBSCRIBE_ACCOUNTS} account ids.", fields={"account_ids": ["A list."]}
            )
        else:
            ids = [self._upstream_account({"account_id": raw}) for raw in raw_ids]
        ids = sorted(set(ids))
        wanted = sorted(set(namespaces))
        channels = [f"{prefix}:{pk}" for pk in ids for ns in wanted for prefix in upstream.NAMESPACE_CHANNELS[ns]]
        assert self.user is not None
        for channel in channels:  # all authorized before any is joined: one refused, none subscribed
            handler = handler_for(channel)
            if handler is None:
                raise DomainError(f"Channel '{channel}' is not available on this server.", code="unknown_channel")
            await handler.authorize(user=self.user, channel=handler.canonical(channel))
        await self.send_frame(
            upstream.response(
                message, event="subscribed", namespace="system", payload={"namespaces": wanted, "account_ids": ids, "channels": channels}
            )
        )
        for channel in channels:
            await self.subscribe(channel, message.get("id"))

    # --- subscriptions -------------------------------------------------------------------

    async def subscribe(self, channel: str, request_id: Any) -> None:
        handler = handler_for(channel)
        if handler is None:
            await self.send_error(request_id, "unknown_channel", f"Unknown channel '{channel[:100]}'.", {"channel": ["Unknown channel."]})
            return
        channel = handler.canonical(channel)  # publishers use the canonical name
        if channel not in self.subs and len(self.subs) >= MAX_SUBSCRIPTIONS:
            await self.send_error(request_id, "too_many_subscriptions", f"At most {MAX_SUBSCRIPTIONS} channels per connection.")
            return
        assert self.user is not None
        await handler.authorize(user=self.user, channel=channel)
        # Re-subscribing starts over with a fresh snapshot (how a client heals a gap).
        old = self.subs.get(channel)
        if old:
            old.cancel_timer()
        sub = _new_subscription(channel, handler, counted=bool(old and old.counted))
        self.subs[channel] = sub
        try:
            # Join before the snapshot: updates that race it are buffered by the
            # subscription's delivery, and those the snapshot reflects dropped by seq.
            await self.hub.join(channel, self)
        except Exception:
            logger.warning("joining %s failed", channel, exc_info=True)
            await self._drop(channel)
            await self.send_error(request_id, "stream_unavailable", "The stream service is unavailable; try again.")
            return
        if not sub.counted:
            await self._tell_handler(sub, subscribed=True)
        await self.send_frame({"type": "subscribed", "channel": channel, "request_id": request_id})
        try:
            seq, data = await handler.snapshot(user=self.user, channel=channel)
        except Exception:
            if self.subs.get(channel) is sub:
                await self._drop(channel)
            raise
        if self.subs.get(channel) is not sub:
            return  # unsubscribed or re-subscribed meanwhile
        await self.send_frame({"type": "snapshot", "channel": channel, "seq": seq, "request_id": request_id, "data": data})
        await self._send_all(sub, sub.delivery.start(seq, time.monotonic()))

    async def _tell_handler(self, sub: Subscription, *, subscribed: bool) -> None:
        # Balanced per connection and channel: once on subscribe (not again on
        # a re-subscribe), once when the subscription goes, however it goes.
        if sub.counted == subscribed:
            return
        try:
            if subscribed:
                await sub.handler.on_subscribe(channel=sub.channel)
            else:
                await sub.handler.on_unsubscribe(channel=sub.channel)
        except Exception:
            logger.warning("%s hook failed for %s", "on_subscribe" if subscribed else "on_unsubscribe", sub.channel, exc_info=True)
            if subscribed:
                return  # not counted, so not owed
        sub.counted = subscribed

    async def _drop(self, channel: str) -> None:
        sub = self.subs.pop(channel, None)
        if sub:
            sub.cancel_timer()
            await self.hub.leave(channel, self)
            await self._tell_handler(sub, subscribed=False)

    async def unsubscribe(self, channel: str, request_id: Any) -> None:
        handler = handler_for(channel)
        if handler is not None:
            channel = handler.canonical(channel)
        if channel not in self.subs:
            await self.send_error(request_id, "not_subscribed", f"Not subscribed to '{channel[:100]}'.")
            return
        await self._drop(channel)
        await self.send_frame({"type": "unsubscribed", "channel": channel, "request_id": request_id})

    # --- updates from the hub ------------------------------------------------------------

    def hub_update(self, event: StreamEvent) -> None:
        sub = self.subs.get(event["channel"])
        if sub is not None:
            self._deliver(sub, sub.delivery.offer(event["seq"], event["frame"], time.monotonic()))

    def hub_down(self) -> None:
        if not self.layer_down:
            self.layer_down = True
            self._send_unavailable()

    def _send_unavailable(self) -> None:
        body = error_body(
            "stream_unavailable", "Live updates are interrupted (the stream service is unavailable); they resume by themselves."
        )
        self._enqueue(frames.encode({"type": "error", "request_id": None, "data": body}))

    def hub_back(self) -> None:
        self.layer_down = False
        self.tasks.append(asyncio.ensure_future(self._resnapshot_all()))

    async def _resnapshot_all(self) -> None:
        for channel in list(self.subs):
            await self._resnapshot(channel)

    def _deliver(self, sub: Subscription, texts: list[str]) -> None:
        self._arm_timer(sub)
        for text in texts:
            self._enqueue(text)

    async def _send_all(self, sub: Subscription, texts: list[str]) -> None:
        self._deliver(sub, texts)

    def _arm_timer(self, sub: Subscription) -> None:
        when = sub.delivery.wake_at()
        if when == sub.timer_at:
            return
        sub.cancel_timer()
        if when is not None:
            sub.timer_at = when
            sub.timer = asyncio.ensure_future(self._timer(sub, when))

    async def _timer(self, sub: Subscription, when: float) -> None:
        await asyncio.sleep(max(0.0, when - time.monotonic()))
        sub.timer = sub.timer_at = None
        if self.subs.get(sub.channel) is not sub:
            return
        fired = sub.delivery.fire(time.monotonic())
        if fired.resnapshot:
            logger.info("gap on %s not filled in time; sending a fresh snapshot", sub.channel)
            await self._resnapshot(sub.channel)
            return
        await self._send_all(sub, fired.frames)

    async def _resnapshot(self, channel: str) -> None:
        sub = self.subs.get(channel)
        if sub is None or self.user is None:
            return
        sub.cancel_timer()
        fresh = _new_subscription(channel, sub.handler, counted=sub.counted)
        self.subs[channel] = fresh
        try:
            seq, data = await sub.handler.snapshot(user=self.user, channel=channel)
        except Exception:
            logger.warning("snapshot of %s failed", channel, exc_info=True)
            await self.send_error(None, "stream_unavailable", f"Could not refresh '{channel[:100]}'; subscribe again.")
            return
        if self.subs.get(channel) is not fresh:
            return
        await self.send_frame({"type": "snapshot", "channel": channel, "seq": seq, "data": data})
        await self._send_all(fresh, fresh.delivery.start(seq, time.monotonic()))
