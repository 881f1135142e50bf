"""The ``chain:<underlying>:<expiry>`` stream: the strike distribution of an
option chain, recomputed as its quotes move.

Computed only for chains someone subscribes to (the gateway's subscriber
counts), at most once per ``FO_CHAIN_STREAM_INTERVAL`` per chain (an update
inside the window is held and sent with the next quote move after it), one
vectorised pass over the chain per update. The chain's instruments are read
once and again when instruments change or every ``SPEC_TTL`` seconds."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.models import User
from core.exceptions import DomainError, InvalidInput
from marketdata.fo.chain import MAX_STRIKES, ChainSpec, chain_compute, chain_load
from marketdata.instrument_cache import instruments_version
from marketdata.quotes import quotes_get
from marketdata.streaming import counters, subscribed_channels, subscribers_add
from marketdata.types import Quote
from streams.publish import publish
from streams.registry import ChannelHandler

logger = logging.getLogger(__name__)
PREFIX = "chain"
SPEC_TTL = 60.0


def split_chain_channel(channel: str) -> tuple[str, date]:
    """``chain:<underlying>:<expiry>``, split at the last colon (underlyings hold colons: ``NSE:NIFTY``)."""
    body = channel[len(PREFIX) + 1 :] if channel.startswith(PREFIX + ":") else ""
    underlying, sep, expiry = body.rpartition(":")
    if not sep or not underlying:
        raise InvalidInput(
            "Chain channels are chain:<underlying>:<expiry YYYY-MM-DD>.", code="unknown_channel", fields={"channel": ["Malformed."]}
        )
    try:
        return underlying, date.fromisoformat(expiry)
    except ValueError:
        raise InvalidInput(
            f"Bad expiry date '{expiry[:12]}'.", code="unknown_channel", fields={"channel": ["Expiry is YYYY-MM-DD."]}
        ) from None


def chain_payload(spec: ChainSpec, quotes: dict[str, Quote], now: float) -> dict[str, Any]:
    return chain_compute(spec=spec, quotes=quotes, now=now, strikes=MAX_STRIKES)


def chain_snapshot(channel: str, now: float | None = None) -> dict[str, Any]:
    underlying, expiry = split_chain_channel(channel)
    now = now if now is not None else time.time()
    spec = chain_load(underlying=underlying, expiry=expiry, now=now)
    return chain_payload(spec, quotes_get(spec.symbols), now)


class ChainChannel(ChannelHandler):
    prefix = PREFIX
    latest_value = True
    description = (
        "An option chain's strike distribution: per strike the call and put quotes, IV, Greeks, OI and its change, depth metrics "
        "and premium/discount, with the chain's PCR, max pain, ATM IV and smile (the body of GET /api/v1/fo/strike-distribution "
        "with every strike)."
    )

    async def authorize(self, *, user: User, channel: str) -> None:
        underlying, expiry = split_chain_channel(channel)
        await database_sync_to_async(chain_load)(underlying=underlying, expiry=expiry)

    async def snapshot(self, *, user: User, channel: str) -> tuple[int, Any]:
        now = time.time()
        return int(now * 1000), await database_sync_to_async(chain_snapshot)(channel, now)

    async def on_subscribe(self, *, channel: str) -> None:
        await database_sync_to_async(subscribers_add)(channel, 1)

    async def on_unsubscribe(self, *, channel: str) -> None:
        await database_sync_to_async(subscribers_add)(channel, -1)

    def asyncapi_channels(self) -> dict[str, Any]:
        return {
            "chain:{underlying}:{expiry}": {
                "description": self.description
                + f" Split at the last colon. At most one update per {settings.FO_CHAIN_STREAM_INTERVAL}s per chain, sent as its quotes move.",
                "parameters": {
                    "underlying": {"schema": {"type": "string"}, "description": "e.g. DEMO:IDX, NSE:NIFTY"},
                    "expiry": {"schema": {"type": "string", "format": "date"}, "description": "the options' expiry date"},
                },
                "subscribe": {"message": {"name": "chain", "payload": {"$ref": "#/components/schemas/OptionChain"}}},
            }
        }

    def asyncapi_schemas(self) -> dict[str, Any]:
        number = {"type": ["number", "null"]}
        decimal = {"type": ["string", "null"], "description": "decimal as a string"}
        reason = {"type": ["string", "null"], "description": "why the fields next to it are null"}
        leg = {
            "type": ["object", "null"],
            "properties": {
                "symbol": {"type": "string"},
                "moneyness": {"type": "string", "description": "ATM, ITMn, OTMn"},
                **{k: decimal for k in ("last", "bid", "ask", "bid_size", "ask_size", "volume", "open_interest", "oi_change", "price")},
                "iv": number,
                "iv_reason": reason,
                **{k: number for k in ("delta", "gamma", "theta_per_year", "theta_per_day", "vega", "rho")},
                "greeks_reason": reason,
                "depth": {"type": "object"},
                "premium": {"type": "object"},
            },
        }
        return {
            "OptionChain": {
                "type": "object",
                "description": "theta per calendar day and per year, vega per vol point, rho per rate point, ACT/365 to the expiry moment",
                "properties": {
                    "underlying": {"type": "string"},
                    "expiry": {"type": "string", "format": "date"},
                    "expiry_time": {"type": "string", "format": "date-time"},
                    "time": {"type": "string", "format": "date-time"},
                    "model": {"type": "string", "enum": ["bs", "black76"]},
                    "spot": decimal,
                    "forward": number,
                    "atm_strike": decimal,
                    "atm_iv": number,
                    "pcr_oi": number,
                    "pcr_volume": number,
                    "max_pain": decimal,
                    "smile": {"type": "array", "items": {"type": "object", "properties": {"strike": {"type": "string"}, "iv": number}}},
                    "strikes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"strike": {"type": "string"}, "moneyness_steps": {"type": "integer"}, "call": leg, "put": leg},
                        },
                    },
                },
                "additionalProperties": True,
            }
        }


@dataclass
class _Stream:
    spec: ChainSpec
    loaded_at: float
    version: int
    last_sent: float = 0.0
    pending: bool = False  # a quote moved since the last update


class ChainBroadcaster:
    """Market-update listener: recomputes and publishes subscribed chains whose quotes moved."""

    def __init__(self) -> None:
        self.streams: dict[str, _Stream] = {}
        self.lock = threading.Lock()

    def _stream(self, channel: str, now: float, version: int) -> _Stream | None:
        stream = self.streams.get(channel)
        if stream is not None and stream.version == version and now - stream.loaded_at < SPEC_TTL:
            return stream
        try:
            underlying, expiry = split_chain_channel(channel)
            spec = chain_load(underlying=underlying, expiry=expiry, now=now)
        except DomainError:
            self.streams.pop(channel, None)  # gone or expired: nothing to stream
            return None
        fresh = _Stream(spec=spec, loaded_at=now, version=version, pending=True)
        if stream is not None:
            fresh.last_sent = stream.last_sent
        self.streams[channel] = fresh
        return fresh

    def update(self, quotes: list[Quote], now: float | None = None) -> int:
        """Publish the chains due; returns how many were sent."""
        now = now if now is not None else time.time()
        channels = subscribed_channels(PREFIX + ":")
        if not channels and not self.streams:
            return 0
        moved = {q.symbol for q in quotes}
        version = instruments_version()
        due: list[tuple[str, ChainSpec]] = []
        with self.lock:
            for gone in set(self.streams) - set(channels):
                del self.streams[gone]  # nobody listens: nothing computed
            for channel in channels:
                stream = self._stream(channel, now, version)
                if stream is None:
                    continue
                if moved.intersection(stream.spec.symbols):
                    stream.pending = True
                if stream.pending and now - stream.last_sent >= settings.FO_CHAIN_STREAM_INTERVAL:
                    stream.pending = False
                    stream.last_sent = now
                    due.append((channel, stream.spec))
        for channel, spec in due:
            try:
                payload = chain_payload(spec, quotes_get(spec.symbols), now)
            except Exception:
                logger.exception("chain %s not computed", channel)
                counters.add("errors")
                continue
            ok = publish(channel, int(now * 1000), payload, latest=True)
            counters.add("broadcasts_sent" if ok else "errors")
        return len(due)


chain_broadcaster = ChainBroadcaster()


def on_market_update(quotes: list[Quote], touched: list[Any]) -> None:
    """Update listener of the simulator step and broker feeds."""
    chain_broadcaster.update(quotes)
