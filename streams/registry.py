"""Channel handlers, registered by apps per channel prefix.

A channel name is ``<prefix>:<rest>`` (``quotes:AAPL``, ``orders:12``) or a
bare prefix (``system``). The handler for a prefix checks that the user may
subscribe and builds the snapshot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from accounts.models import ApiKey, User


class ChannelHandler:
    """Base class for a family of channels sharing a prefix."""

    prefix: str = ""
    #: Market channels deliver the latest value: superseded updates may be
    #: skipped and a slow client gets them coalesced. Account channels are
    #: gap-free and never coalesced.
    latest_value: bool = False
    description: str = ""

    def canonical(self, channel: str) -> str:
        """The channel's canonical name (``bars:X:D`` -> ``bars:X:1D``);
        publishers use it, so subscriptions are made under it."""
        return channel

    async def authorize(self, *, user: User, channel: str) -> None:
        """Raise a DomainError (NotFound, InvalidInput...) to refuse."""

    async def on_subscribe(self, *, channel: str) -> None:
        """A connection subscribed (market data counts subscribers)."""

    async def on_unsubscribe(self, *, channel: str) -> None:
        """A connection unsubscribed or went away."""

    async def snapshot(self, *, user: User, channel: str) -> tuple[int, Any]:
        """Return ``(seq, data)``: the state and the sequence it reflects."""
        raise NotImplementedError

    def asyncapi_channels(self) -> dict[str, Any]:
        """AsyncAPI ``channels`` entries for this family."""
        return {}

    def asyncapi_schemas(self) -> dict[str, Any]:
        """AsyncAPI ``components.schemas`` the channel entries refer to."""
        return {}


CommandHandler = Callable[[User, ApiKey | None, dict[str, Any]], Awaitable[dict[str, Any]]]

_handlers: dict[str, ChannelHandler] = {}
_command_handler: CommandHandler | None = None
_command_schema: Callable[[], dict[str, Any]] | None = None


def register_channel(handler: ChannelHandler) -> ChannelHandler:
    _handlers[handler.prefix] = handler
    return handler


def handler_for(channel: str) -> ChannelHandler | None:
    prefix = channel.split(":", 1)[0]
    return _handlers.get(prefix)


def channel_handlers() -> dict[str, ChannelHandler]:
    return dict(_handlers)


def register_command_handler(handler: CommandHandler, *, message_schema: Callable[[], dict[str, Any]] | None = None) -> None:
    """The OMS registers the function that runs ``{"op": "command"}`` frames,
    and the JSON Schema of those frames (derived from its command specs)."""
    global _command_handler, _command_schema
    _command_handler, _command_schema = handler, message_schema


def command_handler() -> CommandHandler | None:
    return _command_handler


def command_message_schema() -> dict[str, Any] | None:
    """The registered ``command`` frame schema (None: no commands here)."""
    return None if _command_schema is None else _command_schema()


#: Runs a pass-through call of an upstream namespace (``{"namespace": "ccxt",
#: "action": "call"}``): ``(user, account_id, payload) -> answer``; a refusal
#: raises a DomainError. Registered by the app that owns the namespace.
CallHandler = Callable[[User, int, dict[str, Any]], Awaitable[Any]]

_call_handlers: dict[str, CallHandler] = {}


def register_call_handler(namespace: str, handler: CallHandler) -> None:
    _call_handlers[namespace] = handler


def call_handler(namespace: str) -> CallHandler | None:
    return _call_handlers.get(namespace)
