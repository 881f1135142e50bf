"""The authorization matrix (issue 8, proving ground), generated from the
URL configuration and the WebSocket channel registry.

Every API endpoint must have an entry in ``MATRIX`` (and every channel prefix
one in ``CHANNELS`` of ``test_authorization_matrix_ws.py``): a new URL pattern
or channel without one fails ``test_every_endpoint_is_classified`` (or
``test_every_channel_is_classified``), naming it, so nothing
reaches users unchecked. For each endpoint and each method its view answers:

- anonymous -> 401 (public endpoints, listed, answer anonymous instead;
  ``/metrics`` answers 403 to an address it does not know);
- a revoked key -> 401;
- another user's object id (in the path, the query or the body) -> the same
  answer as an id that names nothing: 404 for a path id, never 200, 403 or 500;
- a read-scope key -> 403 on every write;
- the owner's trade key on its own objects -> neither 401, 403 nor 404 (the
  positive control that keeps the checks above honest);

The world (two users, their keys, accounts and an order) is built once per
module inside a transaction rolled back at the end; each test runs in its own
savepoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from accounts.services import api_key_create, api_key_revoke, user_create
from brokers.services import broker_account_create
from marketdata.services import instrument_upsert
from tests.ccxt_support import ccxt_account, fake_exchange
from tests.kis_support import fake_kis, kis_account
from tests.kite_support import kite_account_create
from workspaces.services import watchlist_create, workspace_create

pytestmark = pytest.mark.django_db

# --- the matrix ----------------------------------------------------------------------------------

PUBLIC = "public"  # anonymous may call it (health, version, API docs)
USER = "user"  # the caller's own data; no object id
OWNED = "owned"  # reaches an object by id: another user's id answers as no object
INTERNAL = "internal"  # metrics: a bearer token, staff or an allowed address
FALLBACK = "fallback"  # the catch-all 404s: no view, no data
SIGNED = "signed"  # a broker's redirect or callback: its own signed proof authenticates it, anonymous or not

WRITES = ("post", "put", "patch", "delete")
RESTING = {"symbol": "AAPL", "side": "buy", "order_type": "limit", "qty": "1", "price": "1.00"}
NOBODY = 987_654_321  # an id that names no object


@dataclass(frozen=True)
class Entry:
    access: str
    #: For OWNED: what the id names (account, kis_account, order, api_key) and where it goes.
    obj: str = ""
    via: str = "path"  # path, query (?account_id=) or body
    #: A body per method, given the id; a write without one sends {}.
    bodies: dict[str, Callable[[int], Any]] = field(default_factory=dict)
    #: Which of the owner's credentials writes (key management needs the keys scope).
    owner: str = "trade"
    #: Its POST only reads (a query too long for a URL): a read key may call it.
    post_reads: bool = False
    #: The owner's call may answer this 404 message (a second object the body names).
    owner_may_miss: str = ""


def _account_body(body: dict[str, Any]) -> Callable[[int], Any]:
    return lambda pk: {"account_id": pk, **body}


ORDER_BODY = {"post": lambda pk: RESTING}
KIS = Entry(OWNED, "kis_account")
KIS_BY_QUERY = Entry(OWNED, "kis_account", via="query")

MATRIX: dict[str, Entry] = {
    # Public: probes, versions and the API's own documents.
    "api/v1/health": Entry(PUBLIC),
    "api/v1/health/live": Entry(PUBLIC),
    "api/v1/health/ready": Entry(PUBLIC),
    "api/v1/healthz": Entry(PUBLIC),
    "api/v1/version": Entry(PUBLIC),
    "api/v1/versions": Entry(PUBLIC),
    "api/v1/schema": Entry(PUBLIC),
    "api/v1/openapi.json": Entry(PUBLIC),
    "api/v1/docs": Entry(PUBLIC),
    "api/v1/redoc": Entry(PUBLIC),
    "api/v1/ws/asyncapi.json": Entry(PUBLIC),
    "api/v1/ws/asyncapi": Entry(PUBLIC),
    "api/v1/ws/status": Entry(USER),
    # Kite's postbacks: the checksum in the body is the authentication.
    "api/v1/brokers/kite/postback": Entry(SIGNED),  # its checksum, sha256(order_id + order_timestamp + api_secret)
    # Market data (the UDF datafeed is public only with DATAFEED_PUBLIC, off by default).
    "api/v1/datafeed/config": Entry(USER),
    "api/v1/datafeed/symbols": Entry(USER),
    "api/v1/datafeed/search": Entry(USER),
    "api/v1/datafeed/history": Entry(USER),
    "api/v1/datafeed/quotes": Entry(USER, bodies={"post": lambda pk: {"symbols": ["AAPL"]}}, post_reads=True),
    "api/v1/datafeed/time": Entry(USER),
    "api/v1/datafeed/marks": Entry(USER),
    "api/v1/datafeed/timescale_marks": Entry(USER),
    "api/v1/datafeed/resolve/<textpath:symbol>": Entry(USER),
    "api/v1/datafeed/bars": Entry(USER),
    "api/v1/datafeed/health": Entry(USER),
    "api/v1/symbols": Entry(USER),
    "api/v1/symbols/<textpath:symbol>": Entry(USER),
    "api/v1/quotes": Entry(USER),
    "api/v1/history-bars": Entry(USER),
    "api/v1/fo/calculator": Entry(USER),
    "api/v1/fo/strike-distribution": Entry(USER),
    "api/v1/fo/moneyness-series": Entry(USER),
    "api/v1/futures/position-signals": Entry(USER),
    "api/v1/futures/rollover-metrics": Entry(USER),
    # The user and their keys.
    "api/v1/me": Entry(USER),
    "api/v1/api-keys": Entry(USER, bodies={"post": lambda pk: {"name": "matrix", "scope": "read"}}, owner="keys"),
    "api/v1/api-keys/<id:pk>": Entry(OWNED, "api_key", owner="keys"),
    # Accounts.
    "api/v1/accounts": Entry(USER, bodies={"post": lambda pk: {"kind": "paper", "label": "matrix"}}),
    "api/v1/accounts/<id:pk>": Entry(OWNED, "account", bodies={"patch": lambda pk: {"label": "renamed"}}),
    "api/v1/accounts/<id:pk>/ledger": Entry(OWNED, "account"),
    "api/v1/accounts/<id:pk>/status": Entry(OWNED, "account"),
    "api/v1/accounts/<id:pk>/orders": Entry(OWNED, "account", bodies=ORDER_BODY),
    "api/v1/accounts/<id:pk>/batch-orders": Entry(OWNED, "account", bodies={"post": lambda pk: {"orders": [RESTING]}}),
    "api/v1/accounts/<id:pk>/positions": Entry(OWNED, "account"),
    "api/v1/accounts/<id:pk>/holdings": Entry(OWNED, "account"),
    "api/v1/accounts/<id:pk>/funds": Entry(OWNED, "account"),
    "api/v1/accounts/<id:pk>/sync": Entry(OWNED, "account"),
    "api/v1/accounts/<id:pk>/cancel-all": Entry(OWNED, "account"),
    "api/v1/accounts/<id:pk>/flatten": Entry(OWNED, "account"),
    # KIS tokens: the upstream paths (?account_id=) and the per-account ones.
    "api/v1/auth/kis/status": KIS_BY_QUERY,
    "api/v1/auth/kis/token/refresh": KIS_BY_QUERY,
    "api/v1/auth/kis/approval/refresh": KIS_BY_QUERY,
    "api/v1/accounts/<id:pk>/kis/status": KIS,
    "api/v1/accounts/<id:pk>/kis/token/refresh": KIS,
    "api/v1/accounts/<id:pk>/kis/approval/refresh": KIS,
    # Logging in to Kite: the owner's link, and where Kite's login returns (the signed state authenticates it).
    "api/v1/accounts/<id:pk>/kite/login": Entry(OWNED, "kite_account"),
    "api/v1/brokers/kite/callback": Entry(SIGNED),
    # Orders.
    "api/v1/orders/<id:pk>": Entry(OWNED, "order"),
    "api/v1/orders/<id:pk>/cancel": Entry(OWNED, "order"),
    "api/v1/orders/<id:pk>/change": Entry(OWNED, "order", bodies={"post": lambda pk: {"price": "1.01"}}),
    # The OMS: the account in the body or the query.
    "api/v1/oms/commands": Entry(
        OWNED, "account", via="body", bodies={"post": _account_body({"command": "send_order", "payload": RESTING})}
    ),
    "api/v1/oms/reassign": Entry(
        OWNED,
        "account",
        via="body",
        bodies={"post": _account_body({"deal_ids": [1], "target_strategy_id": "s2"})},
        owner_may_miss="No such deal.",
    ),
    # The upstream CCXT OMS's pass-through (read-only calls, but POSTs: the trade scope).
    "api/v1/ccxt/<id:pk>/<str:func>": Entry(OWNED, "ccxt_account", bodies={"post": lambda pk: {"args": ["BTC/USDT"]}}),
    "api/v1/ccxt/commands": Entry(
        OWNED, "ccxt_account", via="body", bodies={"post": lambda pk: [{"account_id": pk, "func": "fetch_ticker", "args": ["BTC/USDT"]}]}
    ),
    "api/v1/oms/orders/open": Entry(OWNED, "account", via="query"),
    "api/v1/oms/orders/history": Entry(OWNED, "account", via="query"),
    "api/v1/oms/deals": Entry(OWNED, "account", via="query"),
    "api/v1/oms/positions/open": Entry(OWNED, "account", via="query"),
    "api/v1/oms/positions/history": Entry(OWNED, "account", via="query"),
    # Workspaces, watchlists and the user's settings.
    "api/v1/workspaces": Entry(USER, bodies={"post": lambda pk: {"name": "matrix"}}),
    "api/v1/workspaces/default": Entry(USER),
    "api/v1/workspaces/<id:pk>": Entry(
        OWNED, "workspace", bodies={"patch": lambda pk: {"name": "renamed"}, "put": lambda pk: {"name": "renamed", "layout": {}}}
    ),
    "api/v1/watchlists": Entry(USER, bodies={"post": lambda pk: {"name": "matrix"}}),
    "api/v1/watchlists/<id:pk>": Entry(OWNED, "watchlist", bodies={"patch": lambda pk: {"name": "renamed"}}),
    "api/v1/watchlists/<id:pk>/items": Entry(
        OWNED, "watchlist", bodies={"post": lambda pk: {"symbol": "AAPL"}, "put": lambda pk: {"symbols": ["AAPL"]}}
    ),
    "api/v1/watchlists/<id:pk>/items/<textpath:symbol>": Entry(OWNED, "watchlist"),
    "api/v1/me/settings": Entry(USER, bodies={"patch": lambda pk: {"timezone": "Asia/Seoul"}}),
    # Catch-alls and internals.
    "api/v1/^datafeed(?:/(?P<rest>.*))?$": Entry(FALLBACK),
    "^api/": Entry(FALLBACK),
    "metrics": Entry(INTERNAL),
}

#: Outside the API: the admin (staff sessions, its own login), allauth's
#: pages and the dashboard page (both session-only, redirecting to login).
OUTSIDE_API = ("admin/", "accounts/", "broker-accounts", "keys", "settings/", "fo/chain", "fo/futures", "")

# --- walking the URL configuration -----------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    route: str  # as written in the URLconf, without the trailing slash twin
    methods: tuple[str, ...]

    def url(self, pk: int) -> str:
        path = self.route.replace("<id:pk>", str(pk)).replace("<textpath:symbol>", "AAPL").replace("<str:func>", "fetch_ticker")
        return "/" + path


def _walk(resolver: URLResolver, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def _methods(callback: Any) -> tuple[str, ...]:
    view = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if view is None:  # a function view: whatever method it is sent
        return ("get", "post")
    return tuple(m for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m))


def api_endpoints() -> dict[str, Endpoint]:
    found: dict[str, Endpoint] = {}
    for route, callback in _walk(get_resolver()):
        if any(route.startswith(p) for p in OUTSIDE_API if p) and not route.startswith("api/"):
            continue
        if route == "":
            continue
        name = route[:-1] if route.endswith("/") and "^" not in route else route
        found[name] = Endpoint(name, _methods(callback))
    return found


ENDPOINTS = api_endpoints()


def cases(*accesses: str, writes_only: bool = False) -> list[Any]:
    return [
        pytest.param(ENDPOINTS[route], method, id=f"{method.upper()} /{route}")
        for route, entry in MATRIX.items()
        if route in ENDPOINTS and entry.access in accesses
        for method in ENDPOINTS[route].methods
        if not writes_only or (method in WRITES and not (method == "post" and entry.post_reads))
    ]


# --- the world ---------------------------------------------------------------------------------------


@dataclass
class World:
    ids: dict[str, int]
    keys: dict[str, str]


@pytest.fixture(scope="module")
def fake_kis_server() -> Iterator[Any]:
    overrides = SimpleNamespace()  # fake_kis sets KIS's URLs and rates on it
    with fake_kis(overrides) as server, override_settings(**vars(overrides)):
        yield server


@pytest.fixture(scope="module")
def fake_ccxt_server() -> Iterator[Any]:
    with fake_exchange("spot") as server:
        yield server


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, fake_kis_server, fake_ccxt_server) -> Iterator[World]:
    with django_db_blocker.unblock(), transaction.atomic():
        alice = user_create(email="matrix-alice@example.com", password="alice-pass-123")
        bob = user_create(email="matrix-bob@example.com", password="bob-pass-123")
        instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
        keys = {
            "trade": api_key_create(user=alice, name="trade", scope="trade").key,
            "read": api_key_create(user=alice, name="read", scope="read").key,
            "bob": api_key_create(user=bob, name="bob", scope="trade", manage_keys=True).key,
        }
        revoked = api_key_create(user=alice, name="revoked", scope="trade")
        api_key_revoke(api_key=revoked.api_key)
        keys["revoked"] = revoked.key
        account = broker_account_create(owner=alice, kind="paper", label="paper")
        broker_account_create(owner=bob, kind="paper", label="bob paper")
        kis = kis_account(alice)
        kite = kite_account_create(alice)
        ccxt = ccxt_account(alice, fake_ccxt_server)
        manager = api_key_create(user=alice, name="keys", scope="trade", manage_keys=True)
        keys["keys"] = manager.key
        spare_key = api_key_create(user=alice, name="spare", scope="read", parent=manager.api_key).api_key
        sent = client(keys["trade"]).post(f"/api/v1/accounts/{account.pk}/orders", RESTING, format="json")
        assert sent.status_code in (201, 202), sent.content
        workspace = workspace_create(owner=alice, name="alice's")
        watchlist = watchlist_create(owner=alice, name="alice's", symbols=["AAPL"])
        ids = {
            "account": account.pk,
            "kis_account": kis.pk,
            "kite_account": kite.pk,
            "order": sent.json()["order_id"],
            "api_key": spare_key.pk,
            "workspace": workspace.pk,
            "watchlist": watchlist.pk,
            "ccxt_account": ccxt.pk,
        }
        yield World(ids=ids, keys=keys)
        transaction.set_rollback(True)


def client(key: str | None = None) -> APIClient:
    api = APIClient(REMOTE_ADDR="203.0.113.9")  # not an address /metrics trusts
    if key:
        api.credentials(HTTP_X_API_KEY=key)
    return api


def call(api: APIClient, endpoint: Endpoint, method: str, pk: int, entry: Entry) -> Any:
    url = endpoint.url(pk if entry.via == "path" else 1)
    body = entry.bodies[method](pk) if method in entry.bodies else None
    if entry.via == "query":
        url += f"?account_id={pk}"
    if method == "get":
        return api.get(url)
    return getattr(api, method)(url, body if body is not None else {}, format="json")


def same_answer(response: Any) -> tuple[int, Any]:
    body = response.json()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = {k: v for k, v in body["error"].items() if k != "request_id"}
    return response.status_code, body


def error_code(response: Any) -> str:
    """The error code of the project's error shape (or UDF's, under /datafeed)."""
    body = response.json()
    if isinstance(body.get("error"), dict):
        return body["error"]["code"]
    assert body.get("s") == "error", body  # UDF's shape carries a message only
    return ""


def read_body(response: Any) -> bytes:
    if not response.streaming:
        return response.content
    if getattr(response, "is_async", False):

        async def collect() -> bytes:
            return b"".join([bytes(chunk) async for chunk in response.streaming_content])

        return async_to_sync(collect)()
    return b"".join(response.streaming_content)


def shown(response: Any) -> str:
    return f"{response.status_code} {response.content[:300]!r}"


@pytest.fixture(autouse=True)
def _no_failed_authentication_throttle(settings: Any) -> None:
    """The matrix sends a refused key to every endpoint from one address, more
    than THROTTLE_AUTH_FAILURES allows a minute (tests/test_throttling.py tests it)."""
    settings.THROTTLE_AUTH_FAILURES = "1000000/min"


# --- the checks --------------------------------------------------------------------------------------


def test_every_endpoint_is_classified() -> None:
    unknown = sorted(set(ENDPOINTS) - set(MATRIX))
    assert not unknown, (
        f"Endpoints missing from the authorization matrix (tests/test_authorization_matrix.py MATRIX): {unknown}. "
        "Classify each (public, user, owned by id, internal) so its access is checked."
    )
    by_id = sorted(r for r, e in MATRIX.items() if "<id:" in r and e.access != OWNED)
    assert not by_id, f"Endpoints reaching an object by id must be OWNED (another user's id checked): {by_id}"
    stale = sorted(set(MATRIX) - set(ENDPOINTS))
    assert not stale, f"Matrix entries naming no URL pattern (remove or rename them): {stale}"


@pytest.mark.parametrize(("endpoint", "method"), cases(USER, OWNED))
def test_anonymous_gets_401(world: World, endpoint: Endpoint, method: str) -> None:
    entry = MATRIX[endpoint.route]
    response = call(client(), endpoint, method, world.ids.get(entry.obj, 1), entry)
    assert response.status_code == 401, shown(response)
    assert error_code(response) in ("not_authenticated", ""), shown(response)


@pytest.mark.parametrize(("endpoint", "method"), cases(USER, OWNED))
def test_a_revoked_key_gets_401(world: World, endpoint: Endpoint, method: str) -> None:
    entry = MATRIX[endpoint.route]
    response = call(client(world.keys["revoked"]), endpoint, method, world.ids.get(entry.obj, 1), entry)
    assert response.status_code == 401, shown(response)


@pytest.mark.parametrize(("endpoint", "method"), cases(PUBLIC))
def test_public_endpoints_answer_anonymous(world: World, endpoint: Endpoint, method: str) -> None:
    response = client().get(endpoint.url(1))
    assert 200 <= response.status_code < 300 or response.status_code == 503, shown(response)  # ready may be 503


@pytest.mark.parametrize(("endpoint", "method"), cases(SIGNED))
def test_signed_endpoints_refuse_anyone_without_the_proof(world: World, endpoint: Endpoint, method: str) -> None:
    for api in (client(), client(world.keys["bob"])):
        response = getattr(api, method)(endpoint.url(1))
        assert response.status_code == 400, shown(response)
        assert response["Content-Type"].startswith("application/json"), shown(response)


@pytest.mark.parametrize(("endpoint", "method"), cases(INTERNAL, FALLBACK))
def test_internal_and_fallback_paths_tell_anonymous_nothing(world: World, endpoint: Endpoint, method: str) -> None:
    url = endpoint.url(1) if MATRIX[endpoint.route].access == INTERNAL else "/api/v1/datafeed/nothing-here"
    if endpoint.route == "^api/":
        url = "/api/v2/orders/1"
    response = getattr(client(), method)(url)
    assert response.status_code in (403, 404), shown(response)
    assert response["Content-Type"].startswith("application/json"), shown(response)


@pytest.mark.parametrize(("endpoint", "method"), cases(OWNED))
def test_another_users_ids_answer_as_no_object(world: World, endpoint: Endpoint, method: str) -> None:
    entry = MATRIX[endpoint.route]
    bob = client(world.keys["bob"])
    theirs = call(bob, endpoint, method, world.ids[entry.obj], entry)
    nothing = call(bob, endpoint, method, NOBODY, entry)
    assert theirs.status_code < 500, shown(theirs)
    assert theirs.status_code != 403, shown(theirs)
    assert same_answer(theirs) == same_answer(nothing), (shown(theirs), shown(nothing))
    if entry.via in ("path", "query"):  # a list filtered by an account that is not yours: 404 as its URL
        assert theirs.status_code == 404, shown(theirs)


@pytest.mark.parametrize(("endpoint", "method"), cases(USER, OWNED, writes_only=True))
def test_a_read_key_gets_403_on_writes(world: World, endpoint: Endpoint, method: str) -> None:
    entry = MATRIX[endpoint.route]
    response = call(client(world.keys["read"]), endpoint, method, world.ids.get(entry.obj, 1), entry)
    assert response.status_code == 403, shown(response)
    assert error_code(response) in ("permission_denied", ""), shown(response)


@pytest.mark.parametrize("route", [r for r, e in MATRIX.items() if e.post_reads])
def test_a_read_key_may_post_where_a_post_only_reads(world: World, route: str) -> None:
    entry = MATRIX[route]
    response = call(client(world.keys["read"]), ENDPOINTS[route], "post", 1, entry)
    assert response.status_code == 200, shown(response)


@pytest.mark.parametrize(("endpoint", "method"), cases(USER, OWNED))
def test_the_owners_key_reaches_its_own_objects(world: World, endpoint: Endpoint, method: str) -> None:
    entry = MATRIX[endpoint.route]
    key = world.keys[entry.owner if method in WRITES else "trade"]
    response = call(client(key), endpoint, method, world.ids.get(entry.obj, 1), entry)
    missed = response.status_code == 404 and entry.owner_may_miss and response.json()["error"]["message"] == entry.owner_may_miss
    assert response.status_code not in (401, 403, 404) or missed, shown(response)
    assert response.status_code < 500 or response.status_code in (503, 504), shown(response)


@pytest.mark.parametrize(("endpoint", "method"), [c for c in cases(OWNED) if c.values[1] == "get"])
def test_csv_exports_of_another_users_ids_answer_as_no_object(world: World, endpoint: Endpoint, method: str) -> None:
    """``?format=csv`` streams a list another way: the same check."""
    entry = MATRIX[endpoint.route]
    bob = client(world.keys["bob"])

    def export(pk: int) -> Any:
        url = endpoint.url(pk if entry.via == "path" else 1)
        query = f"account_id={pk}&format=csv" if entry.via == "query" else "format=csv"
        response = bob.get(f"{url}?{query}")
        content = read_body(response)
        return response.status_code, content.replace(str(pk).encode(), b"<id>")

    theirs, nothing = export(world.ids[entry.obj]), export(NOBODY)
    assert theirs[0] < 500 and theirs[0] != 403, theirs
    assert theirs[0] == nothing[0], (theirs, nothing)
    if theirs[0] == 200:
        assert theirs[1] == nothing[1], (theirs, nothing)  # a header line at most, nothing of Alice's
