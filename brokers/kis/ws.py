"""The KIS WebSocket feed: live trades into quotes and bars, fill notices into
order updates.

One connection per credential (app key and environment) serves every active
KIS account on it, across all processes: the process opening it holds a
lease (``brokers.locks.lease_acquire``) and renews it; another process finds the lease
taken and leaves the connection to its holder. The connection is opened by
the market-data loop (``marketdata.feeds.registry``): the ``marketdata``
process in production, the in-process loops on the embedded default.

A connection subscribes ``H0STCNT0`` (trades) for the KRX instruments whose
quote source is ``kis`` (at most ``protocol.MAX_SUBSCRIPTIONS`` per session,
the notice subscription included; instruments past that are not streamed
and the feed state says so), spread over the connections so each code is
subscribed once, and the fill notices (``H0STCNI0`` live, ``H0STCNI9`` paper)
of each HTS id (``broker_user_id``). Trades become ticks and quotes of the
instrument's symbol (``KRX:<code>``) in KRW. A notice carries no trade id and
no cumulative quantity: it only triggers a look-up of the order at the broker
(``get_order``, off the socket's loop, on a small bounded pool) whose view is
delivered to the OMS (``deliver_order_updates``), which books the difference
to its cumulative filled quantity, so a notice and the daily-fills poll never
book one fill twice. Without an HTS id fills arrive by polling only.

``PINGPONG`` is answered with a WebSocket pong carrying the same payload (as
the official client does) and the same text echoed back. A dropped
connection reconnects with exponential back-off and jitter (bounded) and
subscribes again; a malformed frame is counted and logged (without its
content) and the connection goes on. The state of each account's feed is
written through ``brokers.health``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings

from brokers.base import BrokerError
from brokers.feed_connections import LeasedFeedProvider, in_worker
from brokers.health import feed_state_set
from brokers.kis import protocol
from brokers.kis.client import KisClient, kis_config_for
from brokers.locks import Lease
from brokers.models import AccountStatus, BrokerAccount, BrokerKind, Environment
from brokers.registry import broker_for, deliver_order_updates
from core.masking import mask_text
from marketdata.feeds.registry import PushFeed
from marketdata.models import Instrument
from marketdata.types import Quote, Tick
from marketdata.venues import symbol_split, venues_of

logger = logging.getLogger(__name__)

SOURCE = "kis"  # Instrument.quote_source of the instruments it streams
KST = ZoneInfo("Asia/Seoul")
CONNECT_TIMEOUT = 10.0
SEND_TIMEOUT = 5.0
# WebSocket keepalive pings, as the official client's library sends them by
# default: a connection that stops answering is closed and reconnected, a quiet
# one (no trades outside market hours) is kept.
KEEPALIVE_INTERVAL = 20.0
KEEPALIVE_TIMEOUT = 20.0
MAX_FRAME = 1 << 20
STABLE_AFTER = 30.0  # a connection up this long resets the back-off
CLOCK_SKEW = 600.0  # a trade time further than this from ours: stamped on arrival
MAX_PENDING_LOOKUPS = 500
LOOKUP_DELAY = 0.3  # seconds from a notice to its look-up (a burst of notices of one order: one look-up)
LOOKUP_FOLLOW_UP = 3.0  # seconds to the second look-up of a noticed order
NOTICES_POLLING = "polling (no HTS id)"
NOTICES_WS = "websocket"


# --- what to connect -----------------------------------------------------------------------


@dataclass(frozen=True)
class AccountPlan:
    account_id: int
    cano: str
    hts_id: str


@dataclass(frozen=True)
class SessionPlan:
    """One connection: a credential, the accounts on it, what it subscribes."""

    key: str  # environment and the credential's digest (never the app key)
    environment: str
    ws_url: str
    accounts: tuple[AccountPlan, ...]
    codes: tuple[tuple[str, str], ...] = ()  # (KRX code, instrument symbol)
    over_limit: tuple[str, ...] = ()  # symbols no session had room for

    @property
    def label(self) -> str:
        """A short name for logs: the environment and the digest's start."""
        environment, _, digest = self.key.partition(":")
        return f"{environment}:{digest[:8]}"

    @property
    def notice_keys(self) -> tuple[str, ...]:
        return tuple(sorted({a.hts_id for a in self.accounts if a.hts_id}))

    @property
    def notice_tr(self) -> str:
        return protocol.tr_ids(self.environment).fills_notice

    def wanted(self) -> set[tuple[str, str]]:
        """(tr_id, tr_key) of every subscription."""
        subs = {(protocol.TRADES_TR, code) for code, _ in self.codes}
        subs |= {(self.notice_tr, hts_id) for hts_id in self.notice_keys}
        return subs


def instrument_code(instrument: Instrument) -> str:
    """The KRX code subscribed for an instrument (its ``code``, else from ``VENUE:CODE``)."""
    return instrument.code or (symbol_split(instrument.symbol) or ("", instrument.symbol))[1]


def plan_sessions() -> list[SessionPlan]:
    """The connections the active KIS accounts and the ``kis``-quoted KRX
    instruments need: one per credential; each code on one connection only
    (live credentials first), within each session's subscription limit."""
    groups: dict[str, tuple[str, str, list[AccountPlan]]] = {}
    accounts = BrokerAccount.objects.filter(kind=BrokerKind.KIS).exclude(status__in=[AccountStatus.DISABLED, AccountStatus.NOT_CONFIGURED])
    for account in accounts.order_by("pk"):
        try:
            config = kis_config_for(account)
        except BrokerError as exc:
            logger.warning("KIS account %s: no feed (%s)", account.pk, mask_text(exc.message)[:200])
            continue
        key = f"{config.environment}:{config.credential_id[:32]}"
        groups.setdefault(key, (config.environment, config.ws_url, []))[2].append(
            AccountPlan(account_id=account.pk, cano=config.cano, hts_id=config.hts_id)
        )
    if not groups:
        return []
    instruments = Instrument.objects.filter(active=True, quote_source=SOURCE, venue__in=venues_of(kind=BrokerKind.KIS)).order_by("symbol")
    codes = [(instrument_code(i), i.symbol) for i in instruments]
    order = sorted(groups, key=lambda k: (groups[k][0] != Environment.LIVE, k))
    plans = []
    for key in order:
        environment, url, members = groups[key]
        room = max(0, protocol.MAX_SUBSCRIPTIONS - len({a.hts_id for a in members if a.hts_id}))
        mine, codes = codes[:room], codes[room:]
        plans.append(SessionPlan(key=key, environment=environment, ws_url=url, accounts=tuple(members), codes=tuple(mine)))
    if codes:
        over = tuple(symbol for _, symbol in codes)
        logger.warning("KIS feed: %d instruments over the subscription limit are not streamed", len(over))
        plans = [SessionPlan(p.key, p.environment, p.ws_url, p.accounts, p.codes, over) for p in plans]
    return plans


# --- frames into ticks and quotes ------------------------------------------------------------


def _dec(value: str) -> Decimal | None:
    try:
        number = Decimal(value.strip())
    except (InvalidOperation, AttributeError):
        return None
    return number if number.is_finite() else None


def _trade_time(record: dict[str, str], received: float) -> float:
    """The trade's time (Korea time on the wire), or the arrival time when it
    is unreadable or implausibly far from the clock."""
    hour = record.get("STCK_CNTG_HOUR", "")
    day = record.get("BSOP_DATE", "") or datetime.fromtimestamp(received, KST).strftime("%Y%m%d")
    try:
        stamp = datetime.strptime(day + hour, "%Y%m%d%H%M%S").replace(tzinfo=KST).timestamp()
    except ValueError:
        return received
    return stamp if abs(stamp - received) <= CLOCK_SKEW else received


def trade_to_market(record: dict[str, str], symbol: str, received: float) -> tuple[Tick, Quote]:
    """One ``H0STCNT0`` record as a tick and a quote of ``symbol`` (KRW).
    Raises ValueError when the price or volume is unreadable."""
    price = _dec(record.get("STCK_PRPR", ""))
    size = _dec(record.get("CNTG_VOL", "")) or Decimal(0)
    if price is None or price <= 0 or size < 0:
        raise ValueError("trade without a price")
    at = _trade_time(record, received)
    change = _dec(record.get("PRDY_VRSS", ""))
    if change is not None and record.get("PRDY_VRSS_SIGN") in ("4", "5") and change > 0:
        change = -change  # 4 lower limit, 5 down
    prev_close = price - change if change is not None and price - change > 0 else None

    def positive(name: str) -> Decimal | None:
        number = _dec(record.get(name, ""))
        return number if number is not None and number > 0 else None

    quote = Quote(
        symbol=symbol,
        time=at,
        last=price,
        bid=positive("BIDP1"),
        ask=positive("ASKP1"),
        bid_size=_dec(record.get("BIDP_RSQN1", "")),
        ask_size=_dec(record.get("ASKP_RSQN1", "")),
        volume=_dec(record.get("ACML_VOL", "")) or Decimal(0),
        day_open=positive("STCK_OPRC"),
        day_high=positive("STCK_HGPR"),
        day_low=positive("STCK_LWPR"),
        prev_close=prev_close,
    )
    return Tick(symbol=symbol, time=at, price=price, size=size), quote


# --- the broker calls a notice triggers ------------------------------------------------------


def approval_key_for(account_id: int, refresh: bool) -> str:
    """The WS approval key of the account's credential, through the adapter's
    client (cached, issued once across processes)."""
    client = KisClient(kis_config_for(BrokerAccount.objects.get(pk=account_id)))
    return client.refresh_approval_key().value if refresh else client.approval_key()


def order_lookup_deliver(account_id: int, broker_order_id: str) -> bool:
    """Ask the broker for the order a notice names and hand its view to the
    OMS. False when the broker had no answer (the periodic poll settles it)."""
    try:
        account = BrokerAccount.objects.get(pk=account_id)
        view = broker_for(account).get_order(broker_order_id=broker_order_id)
    except BrokerAccount.DoesNotExist:
        return False
    except BrokerError as exc:
        logger.warning(
            "KIS notice: order %s of account %s not looked up (%s: %s); the fills poll settles it",
            broker_order_id,
            account_id,
            type(exc).__name__,
            mask_text(str(exc))[:200],
        )
        return False
    if view is None:
        logger.warning("KIS notice: order %s of account %s unknown at the broker", broker_order_id, account_id)
        return False
    deliver_order_updates(account_id, [view])
    return True


# --- one connection ------------------------------------------------------------------------------


@dataclass
class SessionStats:
    connects: int = 0
    frames: int = 0
    trades: int = 0
    notices: int = 0
    lookups: int = 0
    lookups_dropped: int = 0
    malformed: int = 0
    pingpongs: int = 0
    failures: int = 0


@dataclass
class KisSession:
    """One credential's WebSocket; its coroutines run on the provider's loop."""

    plan: SessionPlan
    approval_key: Callable[[int, bool], str]
    lookup: Callable[[int, str], object]
    executor: concurrent.futures.Executor
    feed: PushFeed = field(init=False)
    stats: SessionStats = field(default_factory=SessionStats)
    connected: bool = False
    confirmed: set[tuple[str, str]] = field(default_factory=set)
    cipher: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (tr_id, tr_key): (key, iv) of its ack
    last_message_at: datetime | None = None
    error: str = ""
    lease: Lease | None = None
    task: asyncio.Task[Any] | None = None
    _ws: Any = None
    _sent: set[tuple[str, str]] = field(default_factory=set)
    _refresh_key: bool = False
    _plan_changed: asyncio.Event | None = None
    _pending: set[tuple[int, str]] = field(default_factory=set)
    _pending_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def label(self) -> str:
        return self.plan.label

    def __post_init__(self) -> None:
        self.feed = PushFeed(f"kis:{self.plan.label}")
        self.feed.set_symbols([symbol for _, symbol in self.plan.codes])

    # -- plan --------------------------------------------------------------------------------

    def set_plan(self, plan: SessionPlan) -> None:
        """On the session's loop: subscribe what is new, unsubscribe what went."""
        self.plan = plan
        self.feed.set_symbols([symbol for _, symbol in plan.codes])
        if self._plan_changed is not None:
            self._plan_changed.set()

    def symbol_of(self, code: str) -> str | None:
        for known, symbol in self.plan.codes:
            if known == code:
                return symbol
        return None

    # -- the connection loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Connect, subscribe, read; on any failure back off and again. Ends
        only when cancelled."""
        failures = 0
        self._plan_changed = asyncio.Event()
        self.task = asyncio.current_task()
        while True:
            started = time.monotonic()
            try:
                await self._connect_and_read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {mask_text(str(exc))[:200]}"
                logger.warning("KIS feed %s: connection failed: %s", self.plan.label, self.error)
            finally:
                self.connected = False
                self.confirmed.clear()
                self.cipher.clear()
                self._sent.clear()
                self._ws = None
            self.stats.failures += 1
            failures = 0 if time.monotonic() - started > STABLE_AFTER else failures + 1
            await asyncio.sleep(self.backoff(failures))

    @staticmethod
    def backoff(failures: int) -> float:
        """Exponential in the failures in a row, capped, with jitter (half to full)."""
        initial = float(settings.KIS_WS_BACKOFF_INITIAL)
        ceiling = float(settings.KIS_WS_BACKOFF_MAX)
        delay = min(ceiling, initial * (2 ** min(max(failures - 1, 0), 16)))
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret

    async def _connect_and_read(self) -> None:
        from websockets.asyncio.client import connect

        account_id = self.plan.accounts[0].account_id
        loop = asyncio.get_running_loop()
        # A key KIS refused is issued anew; until that succeeds (the issue rate
        # may refuse it for a while) every attempt asks again.
        approval = await loop.run_in_executor(self.executor, in_worker, self.approval_key, account_id, self._refresh_key)
        self._refresh_key = False
        url = self.plan.ws_url.rstrip("/") + protocol.WS_PATH
        async with connect(
            url,
            open_timeout=CONNECT_TIMEOUT,
            close_timeout=2,
            max_size=MAX_FRAME,
            ping_interval=KEEPALIVE_INTERVAL,
            ping_timeout=KEEPALIVE_TIMEOUT,
            compression=None,
        ) as ws:
            self._ws = ws
            self.connected = True
            self.error = ""
            self.stats.connects += 1
            self.feed.reconnects = self.stats.connects - 1
            logger.info("KIS feed %s: connected", self.plan.label)
            await self._sync_subscriptions(ws, approval)
            watcher = asyncio.ensure_future(self._watch_plan(ws, approval))
            try:
                while True:
                    message = await ws.recv()
                    await self.handle(ws, message if isinstance(message, str) else message.decode("utf-8", "replace"))
                    if self._refresh_key:
                        raise ConnectionError("the approval key was refused")
                    if watcher.done():
                        watcher.result()  # a failed (un)subscribe: reconnect
            finally:
                watcher.cancel()
                with contextlib.suppress(BaseException):
                    await watcher

    async def _watch_plan(self, ws: Any, approval: str) -> None:
        assert self._plan_changed is not None
        while True:
            await self._plan_changed.wait()
            self._plan_changed.clear()
            await self._sync_subscriptions(ws, approval)

    async def _sync_subscriptions(self, ws: Any, approval: str) -> None:
        wanted = self.plan.wanted()
        for tr_id, tr_key in sorted(wanted - self._sent):
            await asyncio.wait_for(ws.send(json.dumps(protocol.subscribe_message(approval, tr_id, tr_key))), SEND_TIMEOUT)
            self._sent.add((tr_id, tr_key))
        for tr_id, tr_key in sorted(self._sent - wanted):
            await asyncio.wait_for(ws.send(json.dumps(protocol.subscribe_message(approval, tr_id, tr_key, subscribe=False))), SEND_TIMEOUT)
            self._sent.discard((tr_id, tr_key))
            self.confirmed.discard((tr_id, tr_key))

    # -- frames -------------------------------------------------------------------------------------

    async def handle(self, ws: Any, text: str) -> None:
        """One text frame; a malformed one is counted and skipped."""
        received = time.time()
        self.last_message_at = datetime.fromtimestamp(received, UTC)
        self.stats.frames += 1
        try:
            frame = protocol.parse_data_frame(text)
            if frame is None:
                await self._control(ws, text)
            elif frame.tr_id == protocol.TRADES_TR:
                self._trades(frame, received)
            elif frame.tr_id == self.plan.notice_tr:
                self._notices(frame)
            else:
                raise ValueError("unexpected TR")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            self.stats.malformed += 1
            self.feed.malformed += 1
            logger.warning("KIS feed %s: malformed frame skipped (%d chars, %s)", self.plan.label, len(text), type(exc).__name__)

    async def _control(self, ws: Any, text: str) -> None:
        message = json.loads(text)
        header = message["header"]
        tr_id = str(header["tr_id"])
        if tr_id == protocol.PINGPONG_TR:
            self.stats.pingpongs += 1
            # The official client answers with a pong of the same payload; the text is echoed too.
            if len(text.encode()) <= 125:
                await asyncio.wait_for(ws.pong(text), SEND_TIMEOUT)
            await asyncio.wait_for(ws.send(text), SEND_TIMEOUT)
            return
        body = message.get("body") or {}
        tr_key = str(header.get("tr_key", ""))
        reason = mask_text(str(body.get("msg1", "")))[:200]
        if str(body.get("rt_cd", "")) != protocol.RT_OK and protocol.WS_ALREADY_SUBSCRIBED in reason.upper():
            self.confirmed.add((tr_id, tr_key))  # subscribed before: still is
            return
        if str(body.get("rt_cd", "")) != protocol.RT_OK:
            self.error = f"{tr_id}: {reason}" if reason else f"{tr_id}: refused"
            logger.warning("KIS feed %s: %s refused: %s", self.plan.label, tr_id, reason)
            if "approval" in reason.lower():
                self._refresh_key = True  # reconnect with a fresh key
            elif "IN USE" in reason.upper():
                # The app key's session is still open at KIS (ours, not yet
                # dropped there): reconnect after the back-off.
                raise ConnectionError("the app key's session is in use")
            return
        output = body.get("output") or {}
        if output.get("key") and output.get("iv"):
            self.cipher[(tr_id, tr_key)] = (str(output["key"]), str(output["iv"]))
        if reason.upper().startswith("UNSUB"):
            self.confirmed.discard((tr_id, tr_key))
        else:
            self.confirmed.add((tr_id, tr_key))

    def _trades(self, frame: protocol.DataFrame, received: float) -> None:
        ticks, quotes = [], []
        for record in protocol.split_records(frame.payload, protocol.TRADE_FIELDS, frame.count):
            symbol = self.symbol_of(record["MKSC_SHRN_ISCD"])
            if symbol is None:
                continue  # unsubscribed meanwhile
            tick, quote = trade_to_market(record, symbol, received)
            ticks.append(tick)
            quotes.append(quote)
        self.stats.trades += len(ticks)
        self.feed.push(ticks, quotes)

    def _notices(self, frame: protocol.DataFrame) -> None:
        payload = frame.payload
        if frame.encrypted:
            payload = self._decrypt(frame)
        for record in protocol.split_records(payload, protocol.NOTICE_FIELDS, frame.count):
            self.stats.notices += 1
            if record["CNTG_YN"] not in (protocol.NOTICE_FILL, protocol.NOTICE_ACK):
                continue
            order_no = record["ODER_NO"].strip()
            account_id = self._account_of(record["ACNT_NO"].strip())
            if not order_no or account_id is None:
                logger.warning("KIS feed %s: notice for an account it does not serve", self.plan.label)
                continue
            self._lookup_later(account_id, order_no)

    def _decrypt(self, frame: protocol.DataFrame) -> str:
        """With the key and iv of the notice subscription's ack (one per HTS
        id subscribed; a frame does not say which, so each is tried)."""
        candidates = [key_iv for (tr_id, _), key_iv in self.cipher.items() if tr_id == frame.tr_id]
        if not candidates:
            raise ValueError("encrypted notice before its key")
        for key, iv in candidates[:-1]:
            with contextlib.suppress(ValueError):
                return protocol.aes_decrypt(frame.payload, key, iv)
        return protocol.aes_decrypt(frame.payload, *candidates[-1])

    def _account_of(self, acnt_no: str) -> int | None:
        """The account a notice names (ACNT_NO: CANO, maybe with the product code)."""
        matches = [a.account_id for a in self.plan.accounts if a.cano and acnt_no.startswith(a.cano)]
        if len(matches) == 1:
            return matches[0]
        noticed = [a.account_id for a in self.plan.accounts if a.hts_id]
        return noticed[0] if not matches and len(noticed) == 1 else None

    def _lookup_later(self, account_id: int, order_no: str, *, delay: float = LOOKUP_DELAY, follow_up: bool = True) -> None:
        """Look the order up on the pool after ``delay`` (notices of one
        order within it make one look-up: a later one would see the same
        cumulative state), then once more after ``LOOKUP_FOLLOW_UP``: a notice
        may arrive before the OMS recorded the order number its send got
        back, and the first view then names no order of ours. Bounded."""
        item = (account_id, order_no)
        with self._pending_lock:
            if item in self._pending:
                return
            if len(self._pending) >= MAX_PENDING_LOOKUPS:
                self.stats.lookups_dropped += 1
                logger.warning("KIS feed %s: order look-ups backlogged, one left to the fills poll", self.plan.label)
                return
            self._pending.add(item)
        asyncio.get_running_loop().call_later(delay, self._lookup_submit, item, follow_up)

    def _lookup_submit(self, item: tuple[int, str], follow_up: bool) -> None:
        def work() -> None:
            with self._pending_lock:
                self._pending.discard(item)
            try:
                self.lookup(*item)
            except Exception:
                logger.exception("KIS notice: order look-up failed")

        try:
            self.executor.submit(in_worker, work)
        except RuntimeError:  # the pool is shut down: the feed is stopping
            with self._pending_lock:
                self._pending.discard(item)
            return
        self.stats.lookups += 1
        if follow_up:
            asyncio.get_running_loop().call_later(LOOKUP_FOLLOW_UP, lambda: self._lookup_later(*item, delay=0.0, follow_up=False))

    # -- state ----------------------------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        return sorted(f"{tr_id}:{tr_key}" if tr_id == protocol.TRADES_TR else tr_id for tr_id, tr_key in self.confirmed)

    def signature(self) -> tuple[object, ...]:
        """What the feed state shows, but the last message time."""
        return (self.connected, frozenset(self.confirmed), self.error, self.plan)

    def state_write(self) -> None:
        error = self.error
        if self.plan.over_limit:
            note = f"{len(self.plan.over_limit)} instruments over the {protocol.MAX_SUBSCRIPTIONS}-subscription limit not streamed"
            error = f"{error}; {note}" if error else note
        for account in self.plan.accounts:
            feed_state_set(
                account.account_id,
                connected=self.connected,
                subscriptions=self.subscriptions(),
                last_message_at=self.last_message_at,
                error=error,
                notices=NOTICES_WS if account.hts_id else NOTICES_POLLING,
            )


# --- every connection of this process ------------------------------------------------------------


class KisFeedProvider(LeasedFeedProvider):
    """The ``kis`` feed provider: re-plans the connections every
    ``KIS_WS_RELOAD_INTERVAL``, opens those whose lease it gets, renews the
    leases and writes the feed states (``brokers.feed_connections``)."""

    name = "kis"
    source = SOURCE
    lease_prefix = "kis-ws:"
    thread_name = "kis-ws"

    def __init__(
        self,
        *,
        approval_key: Callable[[int, bool], str] = approval_key_for,
        lookup: Callable[[int, str], object] = order_lookup_deliver,
        planner: Callable[[], list[SessionPlan]] = plan_sessions,
    ) -> None:
        super().__init__()
        self.approval_key = approval_key
        self.lookup = lookup
        self.planner = planner

    @property
    def sessions(self) -> dict[str, KisSession]:
        return self.connections

    def reload_interval(self) -> float:
        return float(settings.KIS_WS_RELOAD_INTERVAL)

    def plan(self) -> list[SessionPlan]:
        return self.planner()

    def connection_for(self, plan: SessionPlan, executor: concurrent.futures.Executor) -> KisSession:
        return KisSession(plan=plan, approval_key=self.approval_key, lookup=self.lookup, executor=executor)


provider = KisFeedProvider()
