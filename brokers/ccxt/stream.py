"""The CCXT WebSocket feed: a venue's tickers (and trades) streamed through
``ccxt.pro`` (its own exchange clients, never a hand-written one) into
quotes and ticks, for a venue whose plan streams
(``ccxt_streams_market_data``); the connection beside the poller of
``brokers.ccxt.feed``, choosing the same symbols (``SymbolChoice``) and
mapping tickers the same way (``CcxtBroker.quote_of``, ``TickerPoller``).

Where the exchange streams public trades for several symbols
(``watchTradesForSymbols``) the ticks are its trades (``CcxtBroker.tick_of``:
every trade's price and size, so the 1-minute bars hold the real high, low
and volume) and the tickers give the quotes only; else a ticker's move is
the tick, as when polled.

One ccxt.pro exchange per connection, public (no credentials), the
account's testnet and URL options applied (``urls.api.ws`` points it at
another stream host), its markets taken from the shared market cache. It
watches the chosen symbols' tickers in one ``watchTickers`` subscription
where the exchange has it (else one ``watchTicker`` per symbol), with the
channel ``watchTicker`` uses where the exchange names one (Binance: the
full ``ticker``, with the book's best prices, not ``miniTicker``). Every
``CCXT_FEED_INTERVAL`` seconds it re-chooses the symbols; a change (at most
one per ``CCXT_FEED_RESUBSCRIBE_MIN`` seconds) unsubscribes the old set (``unWatchTickers`` and ``unWatchTradesForSymbols``
where the exchange has them), closes the exchange's connections left
without a subscription and subscribes the new set.

A frame ccxt cannot read is counted (``malformed``) and skipped: ccxt.pro
would otherwise stop reading the connection. A dropped connection or any
other error ends the session: the exchange is closed (``await
exchange.close()``), the error shown masked in the accounts' feed state, and
a new exchange subscribes again after ``retry_pause`` (growing, bounded);
``reconnects`` counts the sessions after the first. Ticks and quotes go
into the connection's bounded ``PushFeed``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from brokers.base import BrokerError
from brokers.ccxt.adapter import CcxtBroker
from brokers.ccxt.exchange import ccxt_pro_exchange_for_account
from brokers.ccxt.feed import SymbolChoice, TickerPoller, VenuePlan, retry_pause
from brokers.feed_connections import in_worker
from brokers.health import feed_state_set
from brokers.locks import Lease
from core.masking import mask_text
from marketdata.feeds.registry import PushFeed
from marketdata.types import Quote, Tick

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0  # seconds for ccxt to close the exchange's connections
UNWATCH_TIMEOUT = 5.0  # seconds for an unsubscription's answer


def ticker_params(exchange: Any) -> dict[str, Any]:
    """watchTickers' params asking for the channel watchTicker uses, where
    the exchange names its channels (Binance's watchTickers defaults to the
    mini ticker, without bid and ask)."""
    single, many = exchange.options.get("watchTicker"), exchange.options.get("watchTickers")
    if isinstance(single, dict) and isinstance(many, dict) and single.get("name") and "name" in many:
        return {"name": single["name"]}
    return {}


def streams_trades(exchange: Any) -> bool:
    """Whether the exchange streams public trades for several symbols at once
    (the ticks of the bars: every trade's price and size, not the ticker's moves)."""
    return bool(exchange.has.get("watchTradesForSymbols"))


@dataclass
class VenueStream:
    """One venue's ccxt.pro ticker stream (a "connection" of ``LeasedFeedProvider``)."""

    plan: VenuePlan
    executor: concurrent.futures.Executor
    lease: Lease | None = None
    task: asyncio.Task[None] | None = None
    feed: PushFeed = field(init=False)
    streaming: list[str] = field(default_factory=list)
    connected: bool = False
    error: str = ""
    last_message_at: datetime | None = None
    messages: int = 0
    sessions: int = 0
    failures: int = 0
    _choice: SymbolChoice = field(default_factory=SymbolChoice)
    _converter: TickerPoller = field(default_factory=TickerPoller)
    _kinds: tuple[str, ...] = ("ticker",)  # the streams per symbol ("ticker", "trades")

    def __post_init__(self) -> None:
        self.feed = PushFeed(f"ccxt:{self.plan.key}")

    @property
    def label(self) -> str:
        return self.plan.key

    def set_plan(self, plan: VenuePlan) -> None:
        self.plan = plan  # another account: the session ends at its next check and a new one starts

    # --- the session loop ---------------------------------------------------------------------

    async def run(self) -> None:
        self.task = asyncio.current_task()  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        while True:
            exchange: Any = None
            pause = 0.0
            try:
                broker, exchange = await loop.run_in_executor(self.executor, in_worker, self._build)
                self.sessions += 1
                if self.sessions > 1:
                    self.feed.reconnects += 1
                await self._session(exchange, broker)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                self.connected = False
                message = exc.message if isinstance(exc, BrokerError) else f"{type(exc).__name__}: {exc}"
                self.error = mask_text(str(message))[:300]
                logger.warning("CCXT stream %s: %s", self.label, self.error)
                pause = retry_pause(self.failures)
            finally:
                if exchange is not None:
                    await self._close(exchange)
            if pause:
                await asyncio.sleep(pause)

    def _build(self) -> tuple[CcxtBroker, Any]:
        """The account's sync broker (symbols, mapping) and a ccxt.pro exchange
        on its markets (loaded once and shared, over REST)."""
        from brokers.ccxt.exchange import ccxt_markets_load
        from brokers.models import BrokerAccount

        account = BrokerAccount.objects.get(pk=self.plan.account_id)
        broker = CcxtBroker(account)
        with broker.lock:
            ccxt_markets_load(broker.exchange)
            markets, currencies = broker.exchange.markets, broker.exchange.currencies
        exchange = ccxt_pro_exchange_for_account(account)
        exchange.set_markets(markets, currencies)
        self._guard(exchange)
        return broker, exchange

    def _guard(self, exchange: Any) -> None:
        """A frame ccxt's handler fails on is counted and skipped: raised
        inside ccxt.pro's receive callback it would stop the connection's
        reading for good, without an error to any watcher."""
        handle = exchange.handle_message
        feed, label = self.feed, self.label

        def guarded(client: Any, message: Any) -> Any:
            try:
                return handle(client, message)
            except Exception as exc:
                feed.malformed += 1
                logger.warning("CCXT stream %s: a frame could not be read (%s)", label, mask_text(f"{type(exc).__name__}: {exc}")[:200])
                return None

        exchange.handle_message = guarded

    async def _session(self, exchange: Any, broker: CcxtBroker) -> None:
        """Watch the chosen symbols until an error (raised) or another account (returns)."""
        loop = asyncio.get_running_loop()
        account_id = self.plan.account_id
        watched: dict[str, str] = {}  # ccxt symbol -> ours
        watcher: asyncio.Task[None] | None = None
        changed_at = float("-inf")
        choice_failures = 0
        try:
            while self.plan.account_id == account_id:
                pause = float(settings.CCXT_FEED_INTERVAL)
                try:
                    wanted = await loop.run_in_executor(self.executor, in_worker, self._choose, broker)
                    choice_failures = 0
                except Exception as exc:
                    # The symbols in use are read over REST (orders, balances): a failure there keeps
                    # the running subscription streaming and is retried after a growing pause.
                    choice_failures += 1
                    self.error = mask_text(str(exc.message if isinstance(exc, BrokerError) else f"{type(exc).__name__}: {exc}"))[:300]
                    logger.warning("CCXT stream %s: the symbols in use not read (%s)", self.label, self.error)
                    wanted, pause = watched, retry_pause(choice_failures)
                # A change opens new connections (ccxt.pro's per-subscription streams): paced, within
                # exchanges' connection limits (Binance: 300 per 5 minutes per IP).
                if wanted != watched and loop.time() - changed_at >= float(settings.CCXT_FEED_RESUBSCRIBE_MIN):
                    changed_at = loop.time()
                    await _cancel(watcher)
                    await self._unwatch(exchange, watched)
                    watched = wanted
                    self._kinds = ("ticker", "trades") if streams_trades(exchange) else ("ticker",)
                    self.streaming = sorted(wanted.values())
                    self.feed.set_symbols(self.streaming)
                    watcher = asyncio.create_task(self._watch(exchange, broker, dict(wanted))) if wanted else None
                if watcher is None:  # nothing to stream: no connection open
                    self.connected = True
                    if not choice_failures:
                        self.error = ""
                    await asyncio.sleep(pause)
                    continue
                await asyncio.wait({watcher}, timeout=pause)
                if watcher.done():
                    watcher.result()  # the stream's error
                    raise RuntimeError("the ticker stream ended")
        finally:
            await _cancel(watcher)

    def _choose(self, broker: CcxtBroker) -> dict[str, str]:
        return {broker.market_symbol(s): s for s in self._choice.choose(self.plan, broker)}

    async def _watch(self, exchange: Any, broker: CcxtBroker, markets: dict[str, str]) -> None:
        """Tickers (quotes; ticks too without a trade stream) and, where the
        exchange streams trades, trades (ticks) until an error, raised."""
        trades = streams_trades(exchange)
        try:
            async with asyncio.TaskGroup() as group:
                if exchange.has.get("watchTickers"):
                    group.create_task(self._watch_tickers(exchange, broker, markets, ticks=not trades))
                else:
                    for market in sorted(markets):
                        group.create_task(self._watch_ticker(exchange, broker, markets, market, ticks=not trades))
                if trades:
                    group.create_task(self._watch_trades(exchange, broker, markets))
        except ExceptionGroup as errors:  # the first watcher's error, as it is
            raise errors.exceptions[0] from None

    async def _watch_tickers(self, exchange: Any, broker: CcxtBroker, markets: dict[str, str], *, ticks: bool) -> None:
        params = ticker_params(exchange)
        while True:
            tickers = await exchange.watch_tickers(sorted(markets), params)
            self._tickers(broker, markets, tickers, ticks=ticks)

    async def _watch_ticker(self, exchange: Any, broker: CcxtBroker, markets: dict[str, str], market: str, *, ticks: bool) -> None:
        while True:
            ticker = await exchange.watch_ticker(market)
            self._tickers(broker, markets, {market: ticker}, ticks=ticks)

    async def _watch_trades(self, exchange: Any, broker: CcxtBroker, markets: dict[str, str]) -> None:
        while True:
            trades = await exchange.watch_trades_for_symbols(sorted(markets))
            found = []
            for trade in trades or ():
                ours = markets.get(str(trade.get("symbol"))) if isinstance(trade, dict) else None
                tick = broker.tick_of(ours, trade) if ours is not None else None
                if tick is None:
                    self.feed.malformed += 1
                    continue
                found.append(tick)
            self._received(ticks=found)

    def _tickers(self, broker: CcxtBroker, markets: dict[str, str], tickers: dict[str, Any], *, ticks: bool) -> None:
        quotes: list[Quote] = []
        for market, ticker in (tickers or {}).items():
            ours = markets.get(market)
            if ours is None or not isinstance(ticker, dict):
                continue
            try:
                quotes.append(broker.quote_of(ours, ticker))
            except (BrokerError, ArithmeticError, TypeError, ValueError):
                self.feed.malformed += 1
        self._received(ticks=self._converter.convert(quotes) if ticks else [], quotes=quotes)

    def _received(self, *, ticks: list[Tick] | None = None, quotes: list[Quote] | None = None) -> None:
        self.feed.push(ticks=ticks, quotes=quotes)
        self.messages += 1
        self.connected, self.error = True, ""
        self.failures = 0
        self.last_message_at = datetime.now(UTC)

    async def _unwatch(self, exchange: Any, watched: dict[str, str]) -> None:
        """Unsubscribe the old symbols and close the connections left without
        a subscription; where the exchange cannot unsubscribe them all (or an
        unsubscription fails), close every connection: they carry only the old set."""
        if not watched:
            return
        has = exchange.has
        clean = bool(has.get("watchTickers") and has.get("unWatchTickers"))
        calls = [exchange.un_watch_tickers(sorted(watched), ticker_params(exchange))] if clean else []
        if streams_trades(exchange):
            clean = clean and bool(has.get("unWatchTradesForSymbols"))
            if has.get("unWatchTradesForSymbols"):
                calls.append(exchange.un_watch_trades_for_symbols(sorted(watched)))
        for call in calls:
            try:
                await asyncio.wait_for(call, UNWATCH_TIMEOUT)
            except Exception as exc:
                clean = False
                logger.info("CCXT stream %s: unsubscribing failed (%s)", self.label, mask_text(str(exc))[:200])
        clients = getattr(exchange, "clients", None) or {}
        for url, client in list(clients.items()):
            if not clean or not client.subscriptions:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), CLOSE_TIMEOUT)
                clients.pop(url, None)

    async def _close(self, exchange: Any) -> None:
        try:
            await asyncio.wait_for(exchange.close(), CLOSE_TIMEOUT)
        except Exception as exc:
            logger.info("CCXT stream %s: closing the exchange failed (%s)", self.label, mask_text(str(exc))[:200])

    # --- state ------------------------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        return [f"{kind}:{symbol}" for symbol in self.streaming for kind in self._kinds]

    def signature(self) -> tuple[object, ...]:
        return (self.connected, self.error, tuple(self.streaming))

    def state_write(self) -> None:
        notices = "tickers and trades" if "trades" in self._kinds else "tickers"
        notices += " streamed over WebSocket (ccxt.pro)"
        for member in self.plan.accounts:
            feed_state_set(
                member.account_id,
                connected=self.connected,
                subscriptions=self.subscriptions(),
                last_message_at=self.last_message_at,
                error=self.error,
                notices=notices,
            )


async def _cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel a watcher and wait for it (its outcome dropped; our own cancellation still raises)."""
    if task is None:
        return
    if not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: a watcher's error past its session is no news
