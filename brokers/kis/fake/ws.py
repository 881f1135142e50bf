"""The fake's WebSocket side at protocol.WS_PATH (an asyncio server in its own
thread): subscribe/unsubscribe with an approval key, H0STCNT0 trade frames when
a subscribed code's price moves, encrypted H0STCNI0/H0STCNI9 order and fill
notices for a subscribed HTS id, PINGPONG heartbeats (answers counted), and
the ws_drop fault.

Choices where KIS documents nothing: each subscribe ack carries a fresh AES key
and iv (the notices of that subscription are encrypted with them); the ack's
header says ``encrypt`` "Y" for the notice TRs (the official sample decrypts
only then) and "N" otherwise; error acks use rt_cd "1" with the msg_cd/msg1
in protocol (reported codes)."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import string
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from websockets.asyncio.server import ServerConnection

from brokers.fake_ws import FakeWsServer
from brokers.kis import protocol
from brokers.kis.fake.exchange import App
from brokers.kis.fake.records import Event, now_kst

if TYPE_CHECKING:
    from brokers.kis.fake.server import FakeKisServer

MAX_SESSIONS = 64
OUTBOX = 1000  # frames queued per session; a session that falls further behind is dropped
ALNUM = string.ascii_letters + string.digits
# websockets logs every connection at INFO: the fake's sessions are not news.
logger = logging.getLogger(__name__)
logger.setLevel(logging.WARNING)


def _random(n: int) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(n))


class FakeConnection(ServerConnection):
    """Counts WebSocket pongs that echo a PINGPONG text frame (the official
    client answers the heartbeat that way)."""

    pingpong_payloads: set[bytes]
    on_pong: Any = None

    def acknowledge_pings(self, data: bytes) -> None:
        if self.on_pong is not None and data in getattr(self, "pingpong_payloads", set()):
            self.on_pong()
        super().acknowledge_pings(data)


@dataclass(eq=False)
class Session:
    ws: FakeConnection
    outbox: asyncio.Queue[str]
    app: App | None = None
    subscriptions: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (tr_id, tr_key) -> (key, iv)


class WsServer(FakeWsServer):
    thread_name = "fake-kis-ws"

    def __init__(self, fake: FakeKisServer, host: str, port: int) -> None:
        super().__init__(host, port)
        self.fake = fake
        self.pings_sent = 0
        self.pongs_received = 0
        self.sessions: set[Session] = set()

    # --- called from other threads -------------------------------------------------------------

    def publish(self, events: list[Event]) -> None:
        self.call(self._dispatch, events)

    def poke(self) -> None:
        self.call(self._check_drop)

    # --- the loop --------------------------------------------------------------------------------

    def clients(self) -> set[Session]:
        return self.sessions

    def serve_options(self) -> dict[str, Any]:
        # KIS's heartbeat is the PINGPONG text frame
        return {"ping_interval": None, "create_connection": FakeConnection, "logger": logger}

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [self.every(lambda: self.fake.ping_interval, self._ping)]

    def _ping(self) -> None:
        frame = json.dumps({"header": {"tr_id": protocol.PINGPONG_TR, "datetime": now_kst().strftime("%Y%m%d%H%M%S")}})
        for session in list(self.sessions):
            session.ws.pingpong_payloads = {frame.encode()}
            self.enqueue(session, frame)
            self.pings_sent += 1

    def _count_pong(self) -> None:
        self.pongs_received += 1

    async def handle(self, connection: ServerConnection) -> None:
        ws = cast(FakeConnection, connection)
        path = ws.request.path.split("?")[0] if ws.request is not None else ""
        # the official clients open WS_PATH, some samples WS_PATH/<tr_id>
        if not (path == protocol.WS_PATH or path.startswith(protocol.WS_PATH + "/")) or len(self.sessions) >= MAX_SESSIONS:
            await ws.close(1008, "not here")
            return
        session = Session(ws, asyncio.Queue(OUTBOX))
        ws.pingpong_payloads = set()
        ws.on_pong = self._count_pong
        self.sessions.add(session)
        try:
            await self.converse(session, lambda message: self._on_message(session, message))
        finally:
            self.sessions.discard(session)

    # --- requests --------------------------------------------------------------------------------

    def _ack(
        self, session: Session, tr_id: str, tr_key: str, rt_cd: str, msg_cd: str, msg1: str, output: dict[str, str] | None = None
    ) -> None:
        encrypt = "Y" if tr_id in (protocol.LIVE_TR.fills_notice, protocol.PAPER_TR.fills_notice) and output else "N"
        body: dict[str, Any] = {"rt_cd": rt_cd, "msg_cd": msg_cd, "msg1": msg1}
        if output is not None:
            body["output"] = output
        self.enqueue(session, json.dumps({"header": {"tr_id": tr_id, "tr_key": tr_key, "encrypt": encrypt}, "body": body}))

    def _on_message(self, session: Session, message: str) -> None:
        try:
            data = json.loads(message)
            header = data["header"]
            if header.get("tr_id") == protocol.PINGPONG_TR:  # a client echoing the heartbeat
                self.pongs_received += 1
                return
            tr_id, tr_key = str(data["body"]["input"]["tr_id"]), str(data["body"]["input"]["tr_key"])
            tr_type, approval_key = str(header["tr_type"]), str(header["approval_key"])
        except (ValueError, KeyError, TypeError, AttributeError):
            self._ack(session, "", "", "1", protocol.WS_ERR_JSON, "JSON PARSING ERROR : invalid json format")
            return
        app = self.fake.exchange.app_of_approval(approval_key)
        if app is None or (session.app is not None and session.app.app_key != app.app_key):
            self._ack(session, tr_id, tr_key, "1", protocol.WS_ERR_APPROVAL, "invalid approval : NOT FOUND")
            return
        if (
            session.app is None
            and self.fake.ws_one_session_per_key
            and any(other.app is not None and other.app.app_key == app.app_key for other in self.sessions if other is not session)
        ):
            self._ack(session, tr_id, tr_key, "1", protocol.WS_ERR_KEY_IN_USE, "ALREADY IN USE appkey")
            return
        session.app = app
        notice_tr = protocol.tr_ids(app.environment).fills_notice
        if tr_id not in (protocol.TRADES_TR, notice_tr) or not tr_key or len(tr_key) > 40:
            self._ack(session, tr_id, tr_key, "1", protocol.WS_ERR_TR_ID, "invalid tr_id")
            return
        if tr_type == protocol.UNSUBSCRIBE:
            if session.subscriptions.pop((tr_id, tr_key), None) is None:
                self._ack(session, tr_id, tr_key, "1", protocol.WS_ERR_NOT_SUBSCRIBED, "UNSUBSCRIBE ERROR(not found!)")
            else:
                self._ack(session, tr_id, tr_key, "0", protocol.WS_OK_UNSUBSCRIBE, "UNSUBSCRIBE SUCCESS")
            return
        if tr_type != protocol.SUBSCRIBE:
            self._ack(session, tr_id, tr_key, "1", protocol.WS_ERR_JSON, "invalid tr_type")
            return
        if (tr_id, tr_key) in session.subscriptions:
            self._ack(session, tr_id, tr_key, "1", protocol.WS_ERR_ALREADY, protocol.WS_ALREADY_SUBSCRIBED)
            return
        if len(session.subscriptions) >= protocol.MAX_SUBSCRIPTIONS:
            self._ack(session, tr_id, tr_key, "1", protocol.WS_ERR_MAX, "MAX SUBSCRIBE OVER")
            return
        key, iv = _random(32), _random(16)
        session.subscriptions[(tr_id, tr_key)] = (key, iv)
        self._ack(session, tr_id, tr_key, "0", protocol.WS_OK_SUBSCRIBE, "SUBSCRIBE SUCCESS", {"iv": iv, "key": key})
        asyncio.get_running_loop().call_later(0.05, self._check_drop)  # a pending ws_drop, once the ack is out

    # --- events from the exchange ----------------------------------------------------------------

    def _dispatch(self, events: list[Event]) -> None:
        trades: dict[str, list[dict[str, str]]] = {}
        for kind, event in events:
            if kind == "trade":
                trades.setdefault(event["code"], []).append(event["record"])
        for session in list(self.sessions):
            for code, records in trades.items():
                if (protocol.TRADES_TR, code) in session.subscriptions:
                    self.enqueue(session, protocol.format_data_frame(protocol.TRADES_TR, records, protocol.TRADE_FIELDS))
            for kind, event in events:
                if kind != "notice" or session.app is None or session.app.app_key != event["app_key"]:
                    continue
                tr_id = protocol.tr_ids(event["environment"]).fills_notice
                secret = session.subscriptions.get((tr_id, event["hts_id"]))
                if secret is not None:
                    key, iv = secret
                    self.enqueue(session, protocol.format_data_frame(tr_id, [event["record"]], protocol.NOTICE_FIELDS, key=key, iv=iv))

    def _check_drop(self) -> None:
        if not self.sessions:
            return  # the fault waits for a session to drop
        if self.fake.faults.take("ws", ws=True) is not None:
            self.abort_all()  # no close frame: an abrupt drop
