"""The supervised fault-injection run (issue 8, the proving ground), on the
production processes under supervisord: PostgreSQL, a private redis-server on
its own port, the web process (daphne; ``FAULT_RUN_WEB=uvicorn`` runs the
Procfile's uvicorn), a Celery worker, beat and the marketdata loops (the
simulator's quotes, so market orders fill at the paper venue, and the KIS
feed's fill notices).

A client sends seeded random commands — send (market or resting limit),
batch, cancel, change, close, close_by — across three paper accounts (one
hedging, for close_by) and a KIS paper account (the KIS adapter against the
fake KIS server, ``brokers.kis.fake.FakeKisServer``, which the test runs on
127.0.0.1; the processes reach it through ``KIS_PAPER_REST_URL`` and
``KIS_PAPER_WS_URL``; market and limit day orders of KRX:005930, cancel and
a new price), retrying a failed call with the same Idempotency-Key, and a
WebSocket client follows every account's ``orders`` and ``positions``
channels (reconnecting and re-subscribing when its socket drops or a gap
shows). Between commands a seeded schedule injects each fault kind in turn:

* ``kill_worker``: SIGKILL to the worker's process group (supervisord starts another);
* ``restart_redis``: Redis stopped and started, empty, on the same port;
* ``restart_web``: the web process restarted (the WebSocket client reconnects);
* ``drop_worker_db``: the worker's PostgreSQL connections terminated (the
  paper venue's database failing under a send or a cancel: a broker failure
  before acceptance or a timeout after it, as the moment falls);
* ``disconnect``: a client sends an order and drops the connection once the
  order is committed, without reading the answer, then retries with the same
  Idempotency-Key (the answer must name the same order);
* ``broker_timeout_after_accept``: KIS books the next order sent to it and
  loses the answer (``lose_response``), and the one after it is answered
  past ``BROKER_HTTP_TIMEOUT`` (``slow``): both ``unknown`` until a
  reconciliation finds them, never sent again; the next cancel or change KIS
  takes loses its answer too (left ``pending_cancel``/``pending_change``);
* ``broker_fail_before_accept``: KIS's gateway answers the next order with a
  500 (``http_500``) and the one after it with its rate limit (``rate_limit``):
  nothing booked, the order left ``pending_new`` for the sweeper to send; the
  next cancel or change gets a 500 too.

The step of a broker fault sends a market buy to the KIS account.

After the run the web process is ready and the queue drained; the run waits
until the youngest order still ``unknown``, ``pending_cancel`` or
``pending_change`` is older than the reconciliation's grace
(``OMS_RECONCILE_GRACE_SECONDS``, 10 s here: longer than any broker request),
as beat's next run would find it; then the sweeper and one reconciliation run
(as beat runs them) and the run counts, printing every count and failing on
any non-zero:

* lost: an order answered 202 missing, with another client order id, or still ``pending_new``;
* duplicated: more than one venue order per client order id, or none for an order with a broker id,
  or a retried disconnect answered with another order; at KIS (no client order ids there): more
  than one of our orders for one order in the fake's book, an order of ours whose broker id names
  none there, an order there none of ours is tied to (or imported as someone else's);
* fills_not_once: a venue fill without exactly one trade deal (by trade id), or a deal without a fill;
  at KIS: an order's deals not adding up to what the fake executed for it (its revise orders included);
* mismatched: a position unequal to the sum of its deals, or an account's net quantity per symbol
  in the OMS's trade deals unequal to the venue's fills; at KIS: the net of the deals unequal to the
  fake's executions, or the open position unequal to the fake's holding;
* unresolved: an order still ``unknown``, ``pending_cancel`` or ``pending_change`` after the reconciliation;
* ws_stale: a WebSocket client's last view of open orders and positions unequal to the database;
* server_errors: answers 500 or above.

``FAULT_RUN_COMMANDS`` (300, in CI's PostgreSQL + Redis pass within 4 minutes)
and ``SOAK_COMMANDS`` (2,000, ``pytest -m soak``) set the lengths; ``FAULT_RUN_SEED``
the seed."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from django.db import connection
from django.db.models import Max
from django.utils import timezone
from websockets.sync.client import connect as ws_connect

from brokers.kis import protocol as kis_protocol
from brokers.kis.adapter import parse_order_ref
from brokers.kis.fake import FakeKisServer
from brokers.models import BrokerAccount, PositionMode
from brokers.paper.models import PaperFill, PaperOrder
from brokers.services import broker_account_create
from marketdata.instruments import instrument_ensure_for_venue
from marketdata.models import Instrument
from marketdata.simulation import demo_instruments_ensure
from oms.models import OPEN_STATUSES, Deal, DealKind, Order, OrderEvent, OrderStatus, Position, PositionStatus
from tests.kis_support import APP_KEY as KIS_APP_KEY
from tests.kis_support import APP_SECRET as KIS_APP_SECRET
from tests.kis_support import CANO as KIS_CANO
from tests.kis_support import CODE as KIS_CODE
from tests.kis_support import PRICE as KIS_PRICE
from tests.kis_support import SYMBOL as KIS_SYMBOL
from tests.kis_support import kis_account
from tests.oms_support import position_matches_deals, signed
from tests.servers import BIN, ROOT, free_port, needs_redis_server, server_env
from tests.servers import test_database_url as database_url

pytestmark = [
    pytest.mark.server,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="production mode only (PostgreSQL + Redis)"),
    needs_redis_server,
]

SEED = int(os.environ.get("FAULT_RUN_SEED", "8"))
SYMBOLS = ("AAPL", "MSFT")
# Faults at the KIS account's broker (the fake KIS server), each on the next order sent there.
BROKER_FAULTS = ("broker_timeout_after_accept", "broker_fail_before_accept")
FAULTS = ("kill_worker", "restart_redis", "restart_web", "drop_worker_db", "disconnect", *BROKER_FAULTS)
# Every HTTP request to a broker times out after this (BROKER_HTTP_TIMEOUT of the run's
# processes); a ``slow`` KIS answer comes this much later, the order booked meanwhile.
BROKER_TIMEOUT = 2.0
KIS_SLOW = BROKER_TIMEOUT + 1.5
KIS_HTS_ID = "faultrun"
# Reconciliation's grace (OMS_RECONCILE_GRACE_SECONDS) in the run's processes: longer than any
# broker request (an order a slow answer books comes within KIS_SLOW).
GRACE = 10.0
UNRESOLVED = (OrderStatus.UNKNOWN, OrderStatus.PENDING_CANCEL, OrderStatus.PENDING_CHANGE)
WORKER_APP = "faultrun-worker"
# The web server: daphne, or uvicorn as the Procfile runs it (FAULT_RUN_WEB=uvicorn).
WEB = os.environ.get("FAULT_RUN_WEB", "daphne")
WEB_COMMANDS = {
    "daphne": "{bin}/daphne -b 127.0.0.1 -p {port} config.asgi:application",
    "uvicorn": "{bin}/uvicorn config.asgi:application --host 127.0.0.1 --port {port} --loop uvloop --http httptools "
    "--ws websockets --lifespan off --no-access-log --timeout-graceful-shutdown 5",
}

SUPERVISORD_CONF = """\
[unix_http_server]
file={dir}/supervisor.sock

[supervisord]
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
childlogdir={dir}
nodaemon=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{dir}/supervisor.sock

[program:redis]
command=redis-server --port {redis_port} --bind 127.0.0.1 --save "" --appendonly no --dir {dir}
autorestart=false
priority=1
stdout_logfile={dir}/redis.log
redirect_stderr=true

[program:web]
command={web_command}
environment=DB_POOL_MAX_SIZE="10"
{common}
stdout_logfile={dir}/web.log

[program:worker]
command={bin}/celery -A config worker --loglevel=INFO --concurrency=2 --without-gossip --without-mingle
environment=DB_POOL_MAX_SIZE="2",PGAPPNAME="{worker_app}"
{common}
stdout_logfile={dir}/worker.log

[program:beat]
command={bin}/celery -A config beat --loglevel=INFO --scheduler django_celery_beat.schedulers:DatabaseScheduler --schedule {dir}/beat-schedule
environment=DB_POOL_MAX_SIZE="1"
{common}
stdout_logfile={dir}/beat.log

[program:marketdata]
command={python} manage.py run_loops
environment=DB_POOL_MAX_SIZE="6"
{common}
stdout_logfile={dir}/marketdata.log
"""

COMMON = """\
directory={root}
autorestart=true
startsecs=1
startretries=100
stopasgroup=true
killasgroup=true
stopwaitsecs=10
redirect_stderr=true
priority=10"""


class Supervised:
    """supervisord running the services; faults go through supervisorctl and signals."""

    def __init__(self, tmp_path: Path, env: dict[str, str], redis_port: int, kis: FakeKisServer) -> None:
        for tool in ("supervisord", "supervisorctl"):
            if not (BIN / tool).exists():
                pytest.fail(f"{tool} is not installed (pip install -r requirements/dev.txt)")
        self.dir, self.env, self.kis = tmp_path, env, kis
        self.web_port = free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.conf = tmp_path / "supervisord.conf"
        self.conf.write_text(
            SUPERVISORD_CONF.format(
                dir=tmp_path,
                redis_port=redis_port,
                web_port=self.web_port,
                bin=BIN,
                python=sys.executable,
                worker_app=WORKER_APP,
                web_command=WEB_COMMANDS[WEB].format(bin=BIN, port=self.web_port),
                common=COMMON.format(root=ROOT),
            )
        )
        self.faults: Counter[str] = Counter()
        self.history: list[str] = []
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "supervisord"), "-c", str(self.conf)],
            cwd=ROOT,
            env=server_env(**self.env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.wait_ready(120)

    def ctl(self, *args: str) -> str:
        result = subprocess.run([str(BIN / "supervisorctl"), "-c", str(self.conf), *args], capture_output=True, text=True, timeout=60)
        return result.stdout

    def wait_ready(self, timeout: float, path: str = "/api/v1/health/ready") -> None:
        """Every program RUNNING and the web process answering ``path`` with 200."""
        deadline = time.monotonic() + timeout
        answer: object = None
        while time.monotonic() < deadline:
            status = self.ctl("status")
            if status.count("RUNNING") == 5:
                try:
                    answer = requests.get(f"{self.url}{path}", timeout=10)
                    if answer.status_code == 200:
                        return
                    answer = answer.text
                except requests.RequestException as exc:
                    answer = exc
            time.sleep(0.3)
        raise RuntimeError(f"the services did not come up:\n{status}\nready: {answer}\nfaults {self.history}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.dir.glob("*.log")))

    def inject(self, fault: str) -> None:
        self.faults[fault] += 1
        self.history.append(f"{time.strftime('%H:%M:%S')} {fault}")
        if fault == "kill_worker":
            pid = int(self.ctl("pid", "worker").strip() or 0)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        elif fault == "restart_redis":
            self.ctl("stop", "redis")
            time.sleep(0.5)
            self.ctl("start", "redis")
        elif fault == "restart_web":
            self.ctl("restart", "web")
        elif fault == "drop_worker_db":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
                    [WORKER_APP],
                )
        elif fault == "broker_timeout_after_accept":
            # KIS books the order, then answers too late or not at all: our call times out.
            self.kis.fault("lose_response", path=kis_protocol.ORDER_CASH_PATH)
            self.kis.fault("slow", path=kis_protocol.ORDER_CASH_PATH, seconds=KIS_SLOW)
            # The next cancel or change KIS takes, its answer lost.
            self.kis.fault("lose_response", path=kis_protocol.ORDER_RVSECNCL_PATH)
        elif fault == "broker_fail_before_accept":
            # A gateway error, then the rate limit, before KIS takes the order: nothing booked.
            self.kis.fault("http_500", path=kis_protocol.ORDER_CASH_PATH)
            self.kis.fault("rate_limit", path=kis_protocol.ORDER_CASH_PATH)
            # The next cancel or change refused by the gateway.
            self.kis.fault("http_500", path=kis_protocol.ORDER_RVSECNCL_PATH)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            self.ctl("stop", "all")
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class Client:
    """One trader's REST client: every call retried with the same
    Idempotency-Key until it gets an answer that is not a 503 or a broken
    connection."""

    def __init__(self, services: Supervised, key: str, rng: random.Random) -> None:
        self.services, self.key, self.rng = services, key, rng
        self.session = requests.Session()
        self.statuses: Counter[int] = Counter()
        self.retries = 0

    def new_key(self) -> str:
        return uuid.UUID(int=self.rng.getrandbits(128)).hex

    def call(
        self, method: str, path: str, body: dict | None = None, *, idempotent: bool = True, key: str | None = None
    ) -> requests.Response | None:
        headers = {"X-API-Key": self.key}
        if idempotent:
            headers["Idempotency-Key"] = key or self.new_key()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                response = self.session.request(method, f"{self.services.url}{path}", json=body, headers=headers, timeout=20)
            except requests.RequestException:
                self.retries += 1
                time.sleep(0.3)
                continue
            if response.status_code == 503 or (response.status_code == 409 and response.headers.get("Retry-After")):
                self.retries += 1
                time.sleep(0.3)
                continue
            self.statuses[response.status_code] += 1
            return response
        return None

    def send_and_drop(self, path: str, body: dict, key: str, client_order_id: str) -> None:
        """POST, wait until the order is committed, close the socket unread."""
        conn = http.client.HTTPConnection("127.0.0.1", self.services.web_port, timeout=20)
        try:
            headers = {"X-API-Key": self.key, "Idempotency-Key": key, "Content-Type": "application/json"}
            conn.request("POST", path, json.dumps(body), headers)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not Order.objects.filter(client_order_id=client_order_id).exists():
                time.sleep(0.05)
        except OSError:
            pass
        finally:
            conn.close()


class Watcher(threading.Thread):
    """A WebSocket client on every account's orders and positions channels:
    the open orders and positions as its frames say, re-subscribing from a
    fresh snapshot after a drop, an error frame or a sequence gap."""

    def __init__(self, url: str, key: str, account_ids: list[int]) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url.replace("http://", "ws://") + "/api/v1/ws", key
        self.channels = [f"{kind}:{pk}" for pk in account_ids for kind in ("orders", "positions")]
        self.views: dict[str, dict[int, tuple]] = {c: {} for c in self.channels}
        self.seqs: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.reconnects = self.resubscribes = 0
        self.errors: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()

    @staticmethod
    def row(channel: str, data: dict) -> tuple:
        if channel.startswith("orders"):
            return data["status"], Decimal(data["filled_qty"])
        return data["side"], Decimal(data["qty"])

    @staticmethod
    def is_open(channel: str, data: dict) -> bool:
        return data["status"] in OPEN_STATUSES if channel.startswith("orders") else data["status"] == PositionStatus.OPEN

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._session()
            except Exception as exc:  # any drop: reconnect, as a trader's client does
                self.drops[type(exc).__name__] += 1
            if not self.stopping.is_set():
                self.reconnects += 1
                time.sleep(0.5)

    def _session(self) -> None:
        with ws_connect(self.url, additional_headers={"X-API-Key": self.key}, open_timeout=5, max_size=None) as ws:
            for channel in self.channels:
                ws.send(json.dumps({"op": "subscribe", "channel": channel}))
            while not self.stopping.is_set():
                try:
                    frame = json.loads(ws.recv(timeout=1))
                except TimeoutError:
                    continue
                kind, channel = frame.get("type"), frame.get("channel")
                if kind == "ping":
                    ws.send(json.dumps({"op": "pong", "data": frame.get("data")}))
                elif kind == "snapshot" and channel in self.views:
                    with self.lock:
                        self.views[channel] = {d["id"]: self.row(channel, d) for d in frame["data"]}
                        self.seqs[channel] = frame["seq"]
                elif kind == "update" and channel in self.views:
                    if channel not in self.seqs:
                        continue  # before its snapshot
                    if frame["seq"] != self.seqs[channel] + 1:
                        self._resubscribe(ws, channel)
                        continue
                    data = frame["data"]
                    with self.lock:
                        self.seqs[channel] = frame["seq"]
                        if self.is_open(channel, data):
                            self.views[channel][data["id"]] = self.row(channel, data)
                        else:
                            self.views[channel].pop(data["id"], None)
                elif kind == "error":
                    error = (frame.get("data") or {}).get("error") or {}
                    self.errors[error.get("code", "?")] += 1
                    if "subscribe again" in error.get("message", ""):
                        time.sleep(0.5)
                        for name in self.channels:
                            self._resubscribe(ws, name)

    def _resubscribe(self, ws, channel: str) -> None:
        self.resubscribes += 1
        with self.lock:
            self.seqs.pop(channel, None)
        ws.send(json.dumps({"op": "unsubscribe", "channel": channel}))
        ws.send(json.dumps({"op": "subscribe", "channel": channel}))

    def stale(self) -> list[str]:
        """Channels whose view differs from the database now."""
        out = []
        with self.lock:
            views = {c: dict(v) for c, v in self.views.items()}
        for channel, view in views.items():
            kind, _, pk = channel.partition(":")
            if kind == "orders":
                truth = {o.pk: (o.status, o.filled_qty) for o in Order.objects.filter(account_id=pk, status__in=OPEN_STATUSES)}
            else:
                truth = {p.pk: (p.side, p.qty) for p in Position.objects.filter(account_id=pk, status=PositionStatus.OPEN)}
            if view != truth:
                out.append(f"{channel}: ws {view} db {truth}")
        return out


def _settle(env: dict[str, str]) -> str:
    """The sweeper and one reconciliation, as beat runs them, on the run's services."""
    script = (
        "from oms.services.sweeper import orders_sweep\n"
        "from oms.services.reconcile import accounts_reconcile_all\n"
        "for _ in range(3):\n"
        "    print(orders_sweep().as_dict())\n"
        "for s in accounts_reconcile_all():\n"
        "    print(s.account_id, 'ok' if s.ok else s.error, 'linked', s.linked, 'imported', s.imported, 'rejected', s.rejected, "
        "'updated', len(s.updated), 'cancels retried', s.cancels_retried)\n"
        "print(orders_sweep().as_dict())\n"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        # The run's OMS_SWEEP_AFTER_SECONDS: a send still on its way is never taken over.
        env=server_env(**{**env, "CELERY_TASK_ALWAYS_EAGER": "true"}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def _open_positions(client: Client, account_id: int) -> list[dict]:
    listed = client.call("GET", f"/api/v1/accounts/{account_id}/positions", idempotent=False)
    return [p for p in (listed.json()["results"] if listed is not None and listed.ok else []) if p["status"] == "open"]


def _order(rng: random.Random, account: BrokerAccount) -> dict:
    if account.kind == "kis":
        # Buys outnumber sells: a sell of shares not held is refused by KIS (a rejection, not a fault).
        order = {"symbol": KIS_SYMBOL, "side": rng.choice(("buy", "buy", "sell")), "qty": str(rng.randint(1, 3)), "time_in_force": "day"}
        if rng.random() < 0.6:
            return order | {"order_type": "market"}
        return order | {"order_type": "limit", "side": "buy", "price": str(rng.randint(50, 60) * 1000)}  # below the market: it rests
    order = {"symbol": rng.choice(SYMBOLS), "side": rng.choice(("buy", "sell")), "qty": str(rng.randint(1, 3))}
    if rng.random() < 0.6:
        return order | {"order_type": "market"}
    return order | {"order_type": "limit", "side": "buy", "price": f"{rng.randint(1, 20)}.00"}  # far below the market: it rests


def _new_price(rng: random.Random, kind: str) -> str:
    return f"{rng.randint(50, 60)}500" if kind == "kis" else f"{rng.randint(1, 20)}.50"


def _wait_out_grace(accounts: list[BrokerAccount]) -> float:
    """Wait until the youngest unresolved order is older than the grace, as
    beat's next reconciliation would find it (bounded by the grace)."""
    newest = Order.objects.filter(account__in=accounts, status__in=UNRESOLVED).aggregate(newest=Max("updated_at"))["newest"]
    wait = 0.0 if newest is None else (newest - timezone.now()).total_seconds() + GRACE + 1
    wait = min(max(wait, 0.0), GRACE + 1)
    time.sleep(wait)
    return wait


def _kis_counts(server: FakeKisServer, account: BrokerAccount) -> dict[str, list[str]]:
    """The KIS account against the fake's book: an order at KIS per OMS order
    (revise orders belong to the order they change), its executions booked
    once as deals, the net quantity and the holding equal to the deals'."""
    book = server.exchange.orders_snapshot()
    by_odno = {o["odno"]: o for o in book}

    def root(order: dict) -> str:
        seen = set()
        while order["orgn_odno"] in by_odno and order["odno"] not in seen:
            seen.add(order["odno"])
            order = by_odno[order["orgn_odno"]]
        return order["odno"]

    filled: dict[str, int] = defaultdict(int)
    venue_net = Decimal(0)
    for o in book:
        if not o["is_cancel"]:
            filled[root(o)] += o["filled_qty"]
            venue_net += o["filled_qty"] if o["side"] == kis_protocol.SIDE_BUY else -o["filled_qty"]
    roots = {o["odno"] for o in book if not o["orgn_odno"] and not o["is_cancel"]}
    orders = list(Order.objects.filter(account=account))
    ours: dict[str, list[Order]] = defaultdict(list)
    duplicated: list[str] = []
    for order in orders:
        if order.source == "external":
            duplicated.append(f"order {order.pk} imported from KIS ({order.broker_order_id}): no order of ours was tied to it")
        if order.broker_order_id:
            odno = parse_order_ref(order.broker_order_id)[1]
            ours[odno].append(order)
            if odno not in roots:
                duplicated.append(f"order {order.pk}: {order.broker_order_id} is no order at KIS")
    duplicated += [f"KIS order {odno} is orders {[o.pk for o in ours[odno]]}" for odno in roots if len(ours[odno]) > 1]
    duplicated += [f"KIS order {odno} is no order here" for odno in roots if not ours[odno]]
    trade_deals = Deal.objects.filter(account=account, kind=DealKind.TRADE)
    booked: dict[str, Decimal] = defaultdict(Decimal)
    for broker_order_id, qty in trade_deals.values_list("order__broker_order_id", "qty"):
        booked[parse_order_ref(broker_order_id)[1] if broker_order_id else ""] += qty
    fills_not_once = [
        f"KIS order {odno}: filled {filled[odno]} there, {booked[odno]} booked"
        for odno in roots | set(booked)
        if Decimal(filled.get(odno, 0)) != booked[odno]
    ]
    deals_net = sum((signed(side, qty) for side, qty in trade_deals.values_list("side", "qty")), Decimal(0))
    mismatched = [] if deals_net == venue_net else [f"KIS account: deals {deals_net} executed at KIS {venue_net}"]
    holding = server.exchange.accounts[(KIS_CANO, "01")].holdings.get(KIS_CODE)
    position = Position.objects.filter(account=account, symbol=KIS_SYMBOL, status=PositionStatus.OPEN).first()
    held, ours_qty = Decimal(holding.qty if holding else 0), signed(position.side, position.qty) if position else Decimal(0)
    if held != ours_qty:
        mismatched.append(f"KIS account: position {ours_qty} held at KIS {held}")
    return {"duplicated": duplicated, "fills_not_once": fills_not_once, "mismatched": mismatched}


def _run(tmp_path, alice, alice_key, commands: int) -> None:
    demo_instruments_ensure()
    # The simulator quotes an instrument only in its session: the run's symbols
    # trade around the clock, so market orders fill on any day at any hour.
    Instrument.objects.filter(symbol__in=SYMBOLS).update(session="24x7")
    # KIS's stock: the fake takes orders at any hour (as KIS's paper servers
    # do not); its price stands still, so market orders fill and limits below it rest.
    instrument_ensure_for_venue("KRX", KIS_CODE, name="SAMSUNG ELECTRONICS", lot_size=Decimal(1), multiplier=Decimal(1))
    accounts = [broker_account_create(owner=alice, kind="paper", label=f"fault-{n}") for n in range(2)]
    accounts.append(broker_account_create(owner=alice, kind="paper", label="fault-hedging", position_mode=PositionMode.HEDGING))
    kis = kis_account(alice, label="fault-kis", hts_id=KIS_HTS_ID)
    accounts.append(kis)
    paper_accounts = [a for a in accounts if a.kind == "paper"]
    kis_server = FakeKisServer(rest_port=free_port(), ws_port=free_port())
    kis_server.add_account(KIS_APP_KEY, KIS_APP_SECRET, KIS_CANO, hts_id=KIS_HTS_ID, cash_krw=Decimal(1_000_000_000))
    kis_server.set_price(KIS_CODE, KIS_PRICE, name="SAMSUNG ELECTRONICS")
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = {
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CHANNEL_LAYER_PREFIX": "faultrun",
        "RUN_LOOPS_IN_PROCESS": "false",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "SIMULATOR_ENABLED": "true",
        "SIMULATOR_TICK_INTERVAL": "0.25",
        "WORKER_HEARTBEAT_INTERVAL": "1",
        "OMS_SWEEP_AFTER_SECONDS": "5",
        "OMS_RECONCILE_GRACE_SECONDS": str(GRACE),
        "RISK_MAX_ORDERS_PER_SECOND": "0",
        "RISK_CHECK_BUYING_POWER": "false",
        "DATABASE_URL": database_url(),
        "LOG_LEVEL": "INFO",
        # A fresh database: no month of simulated history to store before the first quote.
        "SIMULATOR_HISTORY_DAYS": "0",
        # KIS is the fake on 127.0.0.1, paced faster than KIS's 2 calls a second on paper.
        "KIS_PAPER_REST_URL": kis_server.rest_url,
        "KIS_PAPER_WS_URL": kis_server.ws_url,
        "KIS_RATE_PAPER": "50",
        "KIS_MAX_PAGES": "200",
        "BROKER_HTTP_TIMEOUT": str(BROKER_TIMEOUT),
    }
    rng = random.Random(SEED)
    services = Supervised(tmp_path, env, redis_port, kis_server)
    accepted: dict[int, str] = {}  # order id -> client order id
    kinds: dict[int, str] = {}  # order id -> its account's kind
    redirected: list[str] = []  # a retry after a disconnect that named another order
    watcher: Watcher | None = None
    # Every fault kind in turn (shuffled per round), one every 20 commands.
    fault_every = 20
    schedule: list[str] = []
    started = time.monotonic()
    phases = dict.fromkeys(("start", "commands", "ready", "grace", "settle"), 0.0)
    try:
        kis_server.start()
        services.start()
        phases["start"] = time.monotonic() - started
        watcher = Watcher(services.url, alice_key, [a.pk for a in accounts])
        watcher.start()
        client = Client(services, alice_key, rng)
        for n in range(commands):
            if n and n % fault_every == 0:
                if not schedule:
                    schedule = rng.sample(FAULTS, len(FAULTS))
                fault = schedule.pop()
                if fault != "disconnect":
                    services.inject(fault)
            else:
                fault = None
            # A broker fault hits the next order sent to KIS: this one.
            account = kis if fault in BROKER_FAULTS else rng.choice(accounts)
            roll = rng.random()
            if fault in ("disconnect", *BROKER_FAULTS) or roll < 0.45 or not accepted:
                client_order_id = f"fr{SEED}-{n}"
                body = {**_order(rng, account), "client_order_id": client_order_id}
                if fault in BROKER_FAULTS:
                    body |= {"side": "buy", "order_type": "market"}  # reaches KIS (a sell might be refused before)
                path = f"/api/v1/accounts/{account.pk}/orders"
                key = client.new_key()
                if fault == "disconnect":
                    services.inject(fault)
                    client.send_and_drop(path, body, key, client_order_id)
                response = client.call("POST", path, body, key=key)
                if response is not None and response.status_code == 202:
                    accepted[response.json()["order_id"]] = client_order_id
                    kinds[response.json()["order_id"]] = account.kind
                    if fault == "disconnect" and Order.objects.filter(client_order_id=client_order_id).count() != 1:
                        redirected.append(client_order_id)
            elif roll < 0.55:
                orders = [{**_order(rng, account), "client_order_id": f"fr{SEED}-{n}-{i}"} for i in range(rng.randint(2, 4))]
                response = client.call("POST", f"/api/v1/accounts/{account.pk}/batch-orders", {"orders": orders})
                if response is not None and response.status_code == 202:
                    for sent, result in zip(orders, response.json(), strict=True):
                        if result.get("order_id"):
                            accepted[result["order_id"]] = sent["client_order_id"]
                            kinds[result["order_id"]] = account.kind
            elif roll < 0.7:
                client.call("POST", f"/api/v1/orders/{rng.choice(list(accepted))}/cancel", {})
            elif roll < 0.82:
                order_id = rng.choice(list(accepted))
                client.call("POST", f"/api/v1/orders/{order_id}/change", {"price": _new_price(rng, kinds[order_id])})
            elif roll < 0.92 or account.position_mode != PositionMode.HEDGING:
                if open_positions := _open_positions(client, account.pk):
                    payload = {"position_id": rng.choice(open_positions)["id"]}
                    client.call("POST", "/api/v1/oms/commands", {"account_id": account.pk, "command": "close_position", "payload": payload})
            else:
                positions = _open_positions(client, account.pk)
                pairs = [(a, b) for a in positions for b in positions if a["symbol"] == b["symbol"] and a["side"] == "long" != b["side"]]
                if pairs:
                    a, b = rng.choice(pairs)
                    payload = {"position_id_a": a["id"], "position_id_b": b["id"]}
                    client.call("POST", "/api/v1/oms/commands", {"account_id": account.pk, "command": "close_by", "payload": payload})
        phases["commands"] = time.monotonic() - started - phases["start"]
        # Let the worker drain its queue, then settle what the faults left.
        services.wait_ready(60, "/api/v1/health/live")
        # The web process ready again (database, cache, channel layer, broker) after the last fault.
        not_ready: list[str] = []
        ready_from = time.monotonic()
        try:
            services.wait_ready(90)
        except RuntimeError as exc:
            not_ready.append(str(exc)[:600])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Order.objects.filter(account__in=accounts, status=OrderStatus.PENDING_NEW).exists():
            time.sleep(0.5)
        phases["ready"] = time.monotonic() - ready_from
        # Beat's next reconciliation finds what is still unknown or pending past its grace.
        phases["grace"] = _wait_out_grace(accounts)
        settle_from = time.monotonic()
        settled = _settle(env)
        ws_stale: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (ws_stale := watcher.stale()):
            time.sleep(0.5)
        phases["settle"] = time.monotonic() - settle_from
    finally:
        if watcher is not None:
            watcher.stopping.set()
        services.stop()
        kis_server.stop()
    elapsed = time.monotonic() - started

    orders = {o.pk: o for o in Order.objects.filter(account__in=accounts)}
    lost = [
        pk
        for pk, client_order_id in accepted.items()
        if pk not in orders or orders[pk].client_order_id != client_order_id or orders[pk].status == OrderStatus.PENDING_NEW
    ]
    book = Counter(PaperOrder.objects.filter(account__account__in=paper_accounts).values_list("client_order_id", flat=True))
    duplicated = [cid for cid, count in book.items() if count > 1] + redirected
    duplicated += [
        o.client_order_id for o in orders.values() if o.account_id != kis.pk and o.broker_order_id and book[o.client_order_id] != 1
    ]
    fills_not_once: list[str] = []
    mismatched = [f"position {p.pk}" for p in Position.objects.filter(account__in=accounts) if not position_matches_deals(p)]
    for account in paper_accounts:
        trade_deals = Deal.objects.filter(account=account, kind=DealKind.TRADE)
        deal_trades = Counter(trade_deals.values_list("broker_trade_id", flat=True))
        fills = PaperFill.objects.filter(account__account=account)
        venue_trades = Counter(fills.values_list("trade_id", flat=True))
        fills_not_once += [
            f"account {account.pk} trade {t}" for t in set(deal_trades) | set(venue_trades) if deal_trades[t] != 1 or venue_trades[t] != 1
        ]
        ours: dict[str, Decimal] = defaultdict(Decimal)
        for side, qty, symbol in trade_deals.values_list("side", "qty", "symbol"):
            ours[symbol] += signed(side, qty)
        venue: dict[str, Decimal] = defaultdict(Decimal)
        for side, qty, symbol in fills.values_list("side", "qty", "symbol"):
            venue[symbol] += signed(side, qty)
        for symbol in set(ours) | set(venue):
            if ours[symbol] != venue[symbol]:
                mismatched.append(f"account {account.pk} {symbol}: deals {ours[symbol]} venue {venue[symbol]}")
    at_kis = _kis_counts(kis_server, kis)
    duplicated += at_kis["duplicated"]
    fills_not_once += at_kis["fills_not_once"]
    mismatched += at_kis["mismatched"]
    server_errors = sum(count for code, count in client.statuses.items() if code >= 500)

    statuses = Counter(o.status for o in orders.values())
    kis_statuses = Counter(o.status for o in orders.values() if o.account_id == kis.pk)
    # Still not settled after waiting out the grace and one reconciliation: the OMS does not know.
    unresolved = sorted(
        f"{o.pk} {'kis' if o.account_id == kis.pk else 'paper'} {o.status}" for o in orders.values() if o.status in UNRESOLVED
    )
    rejections = Counter(
        f"{'kis' if o.account_id == kis.pk else 'paper'}: {o.status_message[:60]}"
        for o in orders.values()
        if o.status == OrderStatus.REJECTED
    )
    deals = Counter(Deal.objects.filter(account__in=accounts).values_list("kind", flat=True))
    kis_book = kis_server.exchange.orders_snapshot()
    counts = {
        "lost": len(lost),
        "duplicated": len(duplicated),
        "fills_not_once": len(fills_not_once),
        "mismatched": len(mismatched),
        "unresolved": len(unresolved),
        "ws_stale": len(ws_stale),
        "web_not_ready": len(not_ready),
        "server_errors": server_errors,
    }
    print(
        f"\nfault run: {commands} commands in {elapsed:.0f}s, seed {SEED}, web {WEB}; faults {dict(services.faults)}; "
        f"answers {dict(client.statuses)}, retried calls {client.retries}; {len(accepted)} orders accepted {dict(statuses)}; "
        f"at KIS: {sum(1 for k in kinds.values() if k == 'kis')} accepted {dict(kis_statuses)}, "
        f"{sum(1 for o in kis_book if not o['orgn_odno'])} orders and {sum(1 for o in kis_book if o['orgn_odno'])} revise/cancel orders "
        f"in the fake's book, order-cash calls {kis_server.calls[kis_protocol.ORDER_CASH_PATH]}, "
        f"orders unknown on the way {OrderEvent.objects.filter(order__account=kis, to_status=OrderStatus.UNKNOWN).count()}; "
        f"rejected for {dict(rejections)}; deals {dict(deals)}, venue fills {PaperFill.objects.filter(account__account__in=paper_accounts).count()}; "
        f"websocket reconnects {watcher.reconnects if watcher else 0}, resubscribes {watcher.resubscribes if watcher else 0}, "
        f"error frames {dict(watcher.errors) if watcher else {}}, drops {dict(watcher.drops) if watcher else {}}; "
        f"phases: start {phases['start']:.0f}s, commands {phases['commands']:.0f}s, web ready and drained after {phases['ready']:.0f}s, "
        f"grace waited {phases['grace']:.0f}s, settle {phases['settle']:.0f}s\n"
        + ", ".join(f"{name} {count}" for name, count in counts.items())
        + f"\nsettle: {settled[-600:]}"
    )
    # Every fault kind at least once per round of the schedule; fills happened, at KIS too.
    rounds = max(1, (commands - 1) // fault_every // len(FAULTS))  # whole rounds of the schedule
    assert all(services.faults[f] >= rounds for f in FAULTS), services.faults
    assert len(accepted) >= commands // 4 and deals[DealKind.TRADE] >= commands // 10, (len(accepted), deals)
    assert kis_statuses[OrderStatus.FILLED] >= rounds, kis_statuses
    assert counts == dict.fromkeys(counts, 0), (
        lost[:20],
        duplicated[:20],
        fills_not_once[:20],
        mismatched[:20],
        unresolved[:20],
        ws_stale[:6],
        not_ready,
    )


@pytest.mark.timeout(600)
def test_fault_run(tmp_path, alice, alice_key):
    _run(tmp_path, alice, alice_key, int(os.environ.get("FAULT_RUN_COMMANDS", "300")))


@pytest.mark.soak
@pytest.mark.timeout(7200)
def test_fault_run_soak(tmp_path, alice, alice_key):
    _run(tmp_path, alice, alice_key, int(os.environ.get("SOAK_COMMANDS", "2000")))
