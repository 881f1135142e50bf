"""The CCXT market-data feed: exchange tickers into quotes and ticks (the
market-data loop folds the ticks into 1-minute bars), streamed over
WebSocket through ``ccxt.pro`` where the exchange has ``watchTicker``
(``brokers.ccxt.stream``), else polled over REST (here).

One connection per exchange venue (``BINANCE``...), run by the process that
wins the venue's lease (``brokers.feed_connections``), through the venue's
first active CCXT account, live accounts before testnet ones (tickers are
public; the account only names the exchange, its testnet and URL options).
It streams when ``ccxt_streams_market_data`` says so for that account.
Either way it quotes the venue's instruments *in use*: those with a
``quotes:`` subscriber, those the venue's accounts traded through us, hold
or have working orders at the exchange (re-read every
``CCXT_FEED_IN_USE_REFRESH`` seconds), quoted by ``ccxt`` and active; at most
``CCXT_FEED_MAX_SYMBOLS`` of them (``SymbolChoice``).

The poller asks for them in one ``fetch_tickers`` call where the exchange
has it (else one call per symbol), every ``CCXT_FEED_INTERVAL`` seconds,
each call paced within the exchange's ``rateLimit`` (``brokers.pacing``, the
account's bucket, shared with the pass-through) and bounded by the
exchange's timeout.

A ticker becomes a quote (``CcxtBroker.quote_of``); a move of its last price
or day volume becomes a tick (``TickerPoller``, size: the volume's
increase). A failed poll is logged masked, shown in the accounts' feed
state (``brokers.health``) and retried after a growing, bounded pause
(``retry_pause``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings

from brokers.base import BrokerError
from brokers.feed_connections import LeasedFeedProvider, in_worker
from brokers.health import feed_state_set
from brokers.locks import Lease
from brokers.pacing import pace
from core.masking import mask_text
from marketdata.feeds.registry import PushFeed
from marketdata.types import Quote, Tick

if TYPE_CHECKING:
    from brokers.ccxt.adapter import CcxtBroker

logger = logging.getLogger(__name__)

SOURCE = "ccxt"  # Instrument.quote_source of the instruments it polls
BACKOFF_MAX = 60.0
PACE_WAIT = 5.0


@dataclass(frozen=True)
class AccountPlan:
    account_id: int


@dataclass(frozen=True)
class VenuePlan:
    key: str  # the venue
    account_id: int  # the account whose exchange polls or streams
    accounts: tuple[AccountPlan, ...] = ()
    stream: bool = False  # through ccxt.pro's WebSocket client (brokers.ccxt.stream), else polled


def plan_venues() -> list[VenuePlan]:
    """One connection per venue of the active CCXT accounts."""
    from django.db.models import Case, When

    from brokers.ccxt.exchange import ccxt_streams_market_data
    from brokers.models import AccountStatus, BrokerAccount, Environment
    from marketdata.venues import ccxt_venue

    groups: dict[str, list[tuple[int, bool]]] = {}
    accounts = BrokerAccount.objects.filter(kind=SOURCE).exclude(status__in=[AccountStatus.DISABLED, AccountStatus.NOT_CONFIGURED])
    # Live accounts first: a venue's quotes come from the live exchange when any account trades it live.
    live_first = accounts.order_by(Case(When(environment=Environment.LIVE, then=0), default=1), "pk")
    for account_id, exchange_id, options in live_first.values_list("pk", "exchange_id", "broker_options"):
        if exchange_id and exchange_id.strip():
            groups.setdefault(ccxt_venue(exchange_id), []).append((account_id, ccxt_streams_market_data(exchange_id, options or {})))
    return [
        VenuePlan(key=venue, account_id=members[0][0], accounts=tuple(AccountPlan(i) for i, _ in members), stream=members[0][1])
        for venue, members in sorted(groups.items())
    ]


def retry_pause(failures: int) -> float:
    """Seconds before the next try after ``failures`` failures in a row (growing, bounded)."""
    return min(BACKOFF_MAX, float(settings.CCXT_FEED_INTERVAL) * 2 ** min(max(failures, 1), 6))


def account_pacer(broker: CcxtBroker) -> Callable[[], None]:
    """Waits for the account's pace within the exchange's ``rateLimit`` before a REST call."""
    rate_limit_ms = float(getattr(broker.exchange, "rateLimit", 0) or 0)
    rate = 1000.0 / rate_limit_ms if rate_limit_ms > 0 else float(settings.CCXT_PASSTHROUGH_RATE)

    def paced() -> None:
        pace(f"ccxt:{broker.account_id}", rate=rate, burst=int(settings.CCXT_PASSTHROUGH_BURST), max_wait=PACE_WAIT)

    return paced


def venue_instruments(venue: str) -> set[str]:
    """Our symbols of the venue's active ``ccxt``-quoted instruments."""
    from marketdata.models import Instrument

    return set(Instrument.objects.filter(active=True, quote_source=SOURCE, venue=venue).values_list("symbol", flat=True))


def subscribed_symbols(venue: str) -> set[str]:
    from marketdata.streaming import subscribed_channels

    prefix = f"quotes:{venue}:"
    return {channel[len("quotes:") :] for channel in subscribed_channels(prefix)}


@dataclass
class SymbolChoice:
    """A venue's symbols to quote now: in use by its accounts (re-read every
    ``CCXT_FEED_IN_USE_REFRESH`` seconds) or subscribed, of its active
    ``ccxt``-quoted instruments, at most ``CCXT_FEED_MAX_SYMBOLS``."""

    _in_use: set[str] = field(default_factory=set)
    _in_use_at: float = float("-inf")

    def choose(self, plan: VenuePlan, broker: CcxtBroker) -> list[str]:
        """Blocking (database, the exchange's REST): run off the event loop."""
        from brokers.ccxt.adapter import CcxtBroker
        from brokers.models import BrokerAccount

        known = venue_instruments(plan.key)
        now = time.monotonic()
        if now - self._in_use_at >= float(settings.CCXT_FEED_IN_USE_REFRESH):
            in_use: set[str] = set()
            paced = account_pacer(broker)
            for member in plan.accounts:
                member_broker = (
                    broker if member.account_id == broker.account_id else CcxtBroker(BrokerAccount.objects.get(pk=member.account_id))
                )
                paced()
                in_use.update(member_broker.ours(s) for s in member_broker.symbols_in_use())
            self._in_use, self._in_use_at = in_use, now
        wanted = sorted((self._in_use | subscribed_symbols(plan.key)) & known)
        limit = max(1, int(settings.CCXT_FEED_MAX_SYMBOLS))
        if len(wanted) > limit:
            logger.warning("CCXT feed %s: %d symbols in use, quoting the first %d", plan.key, len(wanted), limit)
        return wanted[:limit]


class TickerPoller:
    """Turns successive tickers into quotes and, on a move, ticks."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[Decimal, Decimal]] = {}

    def convert(self, quotes: list[Quote]) -> list[Tick]:
        ticks = []
        for quote in quotes:
            volume = quote.volume or Decimal(0)
            previous = self._last.get(quote.symbol)
            self._last[quote.symbol] = (quote.last, volume)
            if previous is None:
                size = Decimal(0)
            else:
                last, last_volume = previous
                size = volume - last_volume if volume >= last_volume else volume  # lower: a new day
                if size == 0 and quote.last == last:
                    continue
            ticks.append(Tick(symbol=quote.symbol, time=quote.time, price=quote.last, size=size))
        return ticks


@dataclass
class VenuePoller:
    """One venue's polling loop (a "connection" of ``LeasedFeedProvider``)."""

    plan: VenuePlan
    executor: concurrent.futures.Executor
    lease: Lease | None = None
    task: asyncio.Task[None] | None = None
    feed: PushFeed = field(init=False)
    polling: list[str] = field(default_factory=list)
    connected: bool = False
    error: str = ""
    last_message_at: datetime | None = None
    polls: int = 0
    failures: int = 0
    _choice: SymbolChoice = field(default_factory=SymbolChoice)
    _converter: TickerPoller = field(default_factory=TickerPoller)

    def __post_init__(self) -> None:
        self.feed = PushFeed(f"ccxt:{self.plan.key}")

    @property
    def label(self) -> str:
        return self.plan.key

    def set_plan(self, plan: VenuePlan) -> None:
        self.plan = plan

    async def run(self) -> None:
        self.task = asyncio.current_task()  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(self.executor, in_worker, self.poll_once)
                self.failures = 0
                pause = float(settings.CCXT_FEED_INTERVAL)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                self.connected = False
                message = exc.message if isinstance(exc, BrokerError) else f"{type(exc).__name__}: {exc}"
                self.error = mask_text(str(message))[:300]
                logger.warning("CCXT feed %s: poll failed (%s)", self.label, self.error)
                pause = retry_pause(self.failures)
            await asyncio.sleep(pause)

    def poll_once(self) -> None:
        """One poll: the symbols in use, their tickers, into the feed. Raises on failure."""
        from brokers.ccxt.adapter import CcxtBroker
        from brokers.models import BrokerAccount

        broker = CcxtBroker(BrokerAccount.objects.get(pk=self.plan.account_id))
        paced = account_pacer(broker)
        symbols = self._choice.choose(self.plan, broker)
        self.polling = symbols
        self.feed.set_symbols(symbols)
        quotes: list[Quote] = []
        if symbols:
            markets = {broker.market_symbol(s): s for s in symbols}
            tickers = broker.tickers(sorted(markets), before_call=paced)
            for market, ours in markets.items():
                ticker = tickers.get(market)
                if ticker is None:
                    continue
                try:
                    quotes.append(broker.quote_of(ours, ticker))
                except BrokerError:
                    continue
        ticks = self._converter.convert(quotes)
        self.feed.push(ticks=ticks, quotes=quotes)
        self.polls += 1
        self.connected = True
        self.error = ""
        self.last_message_at = datetime.now(UTC)

    def subscriptions(self) -> list[str]:
        return [f"ticker:{symbol}" for symbol in self.polling]

    def signature(self) -> tuple[object, ...]:
        return (self.connected, self.error, tuple(self.polling))

    def state_write(self) -> None:
        notices = f"tickers polled every {float(settings.CCXT_FEED_INTERVAL):g} s (REST, no WebSocket)"
        for member in self.plan.accounts:
            feed_state_set(
                member.account_id,
                connected=self.connected,
                subscriptions=self.subscriptions(),
                last_message_at=self.last_message_at,
                error=self.error,
                notices=notices,
            )


class CcxtFeedProvider(LeasedFeedProvider):
    name = "ccxt"
    source = SOURCE
    lease_prefix = "ccxt-feed:"
    thread_name = "ccxt-feed"

    def reload_interval(self) -> float:
        return float(settings.CCXT_FEED_RELOAD_INTERVAL)

    def plan(self) -> list[VenuePlan]:
        return plan_venues()

    def connection_for(self, plan: VenuePlan, executor: concurrent.futures.Executor) -> Any:
        if plan.stream:
            from brokers.ccxt.stream import VenueStream

            return VenueStream(plan, executor)
        return VenuePoller(plan, executor)

    def replaces(self, connection: Any, plan: VenuePlan) -> bool:
        # Streaming turned on or off for the venue (settings, the account's URLs): the other kind of connection.
        return bool(connection.plan.stream != plan.stream)


provider = CcxtFeedProvider()
