"""The upstream CCXT OMS's pass-through (``brokers.ccxt_passthrough``):
``POST /api/v1/ccxt/{account_id}/{func}``, ``POST /api/v1/ccxt/commands`` and
the WebSocket ``ccxt/call`` frame, against the fake exchange (Binance's wire
answers under ccxt's own parsing) over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from brokers.ccxt.fake import FakeCcxtExchange
from brokers.ccxt_passthrough import BATCH_MAX, READ_CALLS, ccxt_answer, ccxt_func_check
from brokers.models import BrokerAccount
from brokers.services import broker_account_create
from core.exceptions import Forbidden, NotFound
from tests.ccxt_support import BALANCES, ccxt_account, fake_exchange

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake() -> Iterator[FakeCcxtExchange]:
    with fake_exchange("spot") as server:
        yield server


@pytest.fixture
def account(alice, fake) -> BrokerAccount:
    return ccxt_account(alice, fake)


def post(api: Any, url: str, body: Any) -> Any:
    return api.post(url, body, format="json")


def order_calls(fake: FakeCcxtExchange) -> int:
    return sum(n for call, n in fake.calls.items() if "/order" in call.lower())


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content[:500])
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"] and "request_id" in error
    return error


# --- answers -------------------------------------------------------------------------------------


def test_fetch_ticker_answers_ccxts_ticker_with_numbers(alice_api, account):
    response = post(alice_api, f"/api/v1/ccxt/{account.pk}/fetch_ticker", {"args": ["BTC/USDT"]})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is True
    ticker = body["result"]
    assert ticker["symbol"] == "BTC/USDT"
    assert ticker["last"] == 50000 and isinstance(ticker["last"], int | float)  # numbers, not decimal strings
    assert isinstance(ticker["info"], dict)  # the exchange's raw answer, as ccxt gives it
    # camelCase, keyword arguments and the trailing slash answer the same.
    again = post(alice_api, f"/api/v1/ccxt/{account.pk}/fetchTicker/", {"kwargs": {"symbol": "BTC/USDT"}})
    assert again.status_code == 200 and again.json()["result"]["symbol"] == "BTC/USDT"


def test_fetch_balance_answers_every_currency(alice_api, account):
    response = post(alice_api, f"/api/v1/ccxt/{account.pk}/fetch_balance", {})
    assert response.status_code == 200, response.content
    balance = response.json()["result"]
    assert balance["USDT"]["free"] == float(BALANCES["spot"]["USDT"])
    assert balance["BNB"]["total"] == float(BALANCES["spot"]["BNB"])  # every currency the exchange reports


def test_fetch_ohlcv_answers_candles(alice_api, account):
    response = post(alice_api, f"/api/v1/ccxt/{account.pk}/fetch_ohlcv", {"args": ["BTC/USDT", "1m"], "kwargs": {"limit": 5}})
    assert response.status_code == 200, response.content
    candles = response.json()["result"]
    assert len(candles) == 5
    for candle in candles:
        assert len(candle) == 6 and all(isinstance(v, int | float) for v in candle)
    assert candles == sorted(candles)  # oldest first, as ccxt gives them


def test_load_markets_is_shared_not_reloaded_per_call(alice_api, account, fake):
    markets = post(alice_api, f"/api/v1/ccxt/{account.pk}/load_markets", {})
    assert markets.status_code == 200 and "BTC/USDT" in markets.json()["result"]
    for _ in range(3):
        assert post(alice_api, f"/api/v1/ccxt/{account.pk}/fetch_ticker", {"args": ["BTC/USDT"]}).status_code == 200
    assert fake.calls["GET /api/v3/exchangeInfo"] == 1


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("func", "args"),
    [
        ("create_order", ["BTC/USDT", "limit", "buy", 0.01, 40000]),
        ("createOrder", ["BTC/USDT", "market", "buy", 0.01]),
        ("create_market_buy_order", ["BTC/USDT", 0.01]),
        ("cancel_order", ["1", "BTC/USDT"]),
        ("cancel_all_orders", ["BTC/USDT"]),
        ("edit_order", ["1", "BTC/USDT", "limit", "buy", 0.01, 1]),
    ],
)
def test_order_changing_calls_are_refused_and_reach_nothing(alice_api, account, fake, func, args):
    response = post(alice_api, f"/api/v1/ccxt/{account.pk}/{func}", {"args": args})
    error = assert_error(response, 403, "ccxt_call_refused")
    assert "OMS command" in error["message"] and "/api/v1/oms/commands" in error["message"]
    assert order_calls(fake) == 0 and fake.orders() == []


@pytest.mark.parametrize(
    ("func", "status", "code", "why"),
    [
        ("withdraw", 403, "ccxt_call_refused", "moves money"),
        ("transfer", 403, "ccxt_call_refused", "moves money"),
        ("set_leverage", 403, "ccxt_call_refused", "settings"),
        ("private_get_account", 403, "ccxt_call_refused", "raw exchange endpoint"),
        ("fetch", 404, "ccxt_call_unknown", "read-only"),  # ccxt's raw HTTP request
        ("fetch2", 404, "ccxt_call_unknown", "read-only"),
        ("sign", 404, "ccxt_call_unknown", "read-only"),
        ("__init__", 422, "validation_error", "method name"),
        ("describe", 404, "ccxt_call_unknown", "read-only"),
    ],
)
def test_other_calls_are_refused_naming_why(alice_api, account, func, status, code, why):
    error = assert_error(post(alice_api, f"/api/v1/ccxt/{account.pk}/{func}", {}), status, code)
    assert why in error["message"]


def test_the_allow_list_holds_only_reads():
    for func in READ_CALLS:
        assert func == "load_markets" or func.startswith("fetch_"), func
        assert ccxt_func_check(func) == func
    with pytest.raises(Forbidden):
        ccxt_func_check("createOrder")
    with pytest.raises(NotFound):
        ccxt_func_check("fetch_paginated_call_dynamic")


def test_other_users_accounts_and_other_kinds_are_refused(alice_api, bob_api, account, alice, fake):
    other = assert_error(post(bob_api, f"/api/v1/ccxt/{account.pk}/fetch_balance", {}), 404, "not_found")
    nothing = assert_error(post(bob_api, "/api/v1/ccxt/987654321/fetch_balance", {}), 404, "not_found")
    assert other["message"] == nothing["message"]
    batch = post(bob_api, "/api/v1/ccxt/commands", [{"account_id": account.pk, "func": "fetch_balance"}])
    assert_error(batch, 404, "not_found")
    paper = broker_account_create(owner=alice, kind="paper", label="paper")
    assert_error(post(alice_api, f"/api/v1/ccxt/{paper.pk}/fetch_balance", {}), 422, "not_a_ccxt_account")
    assert fake.calls["GET /api/v3/account"] == 0


def test_a_read_scope_key_gets_403(alice_read_key, account, api):
    api.credentials(HTTP_X_API_KEY=alice_read_key)
    assert_error(post(api, f"/api/v1/ccxt/{account.pk}/fetch_balance", {}), 403, "permission_denied")
    assert_error(post(api, "/api/v1/ccxt/commands", [{"account_id": account.pk, "func": "fetch_balance"}]), 403, "permission_denied")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"args": "BTC/USDT"}, "validation_error"),
        ({"kwargs": ["BTC/USDT"]}, "validation_error"),
        ({"args": ["BTC/USDT"], "extra": 1}, "validation_error"),
        (["BTC/USDT"], "validation_error"),
        ({"args": ["B" * 5000]}, "validation_error"),
        ({"args": [{"a": {"b": {"c": {"d": {"e": 1}}}}}]}, "validation_error"),
        ({"args": ["BTC/USDT", {"x": 1}, 3, 4, 5, 6, 7, 8, 9]}, "validation_error"),
        ({"args": [1234]}, "validation_error"),  # a symbol is a string
        ({"args": ["BTC/USDT"], "kwargs": {"nonsense": 1}}, "ccxt_bad_arguments"),
        ({"args": ["BTC/USDT", "a", "b", "c"]}, "ccxt_bad_arguments"),
        ({"kwargs": {"symbol": "BTC/USDT", "params": "x"}}, "validation_error"),
        ({"kwargs": {"symbol": "BTC/USDT", "params": {"k" * 100: 1}}}, "validation_error"),
        ({"kwargs": {"symbol": "BTC/USDT\u0000"}}, "validation_error"),
        ({"kwargs": {"symbol": "NOPE/NOPE"}}, "broker_rejected"),  # ccxt's BadSymbol
    ],
)
def test_hostile_input_gets_the_error_shape(alice_api, account, body, code):
    response = post(alice_api, f"/api/v1/ccxt/{account.pk}/fetch_ticker", body)
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"limit": -1}, "validation_error"),
        ({"limit": True}, "validation_error"),
        ({"since": "yesterday"}, "validation_error"),
        ({"limit": 2**70}, "validation_error"),
        ({"timeframe": "1m" * 10}, "validation_error"),
    ],
)
def test_bounded_numbers_and_names(alice_api, account, kwargs, code):
    response = post(alice_api, f"/api/v1/ccxt/{account.pk}/fetch_ohlcv", {"args": ["BTC/USDT"], "kwargs": kwargs})
    assert_error(response, 422, code)


# --- exchange errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("server_error", 502, "exchange_error"),
        ("unavailable", 502, "exchange_unavailable"),
        ("rate_limit", 503, "broker_busy"),
        ("auth", 409, "broker_auth"),
    ],
)
def test_exchange_errors_map_to_clear_statuses(alice_api, account, fake, fault, status, code):
    assert post(alice_api, f"/api/v1/ccxt/{account.pk}/load_markets", {}).status_code == 200
    fake.fault(fault, path="/api/v3/account")
    response = post(alice_api, f"/api/v1/ccxt/{account.pk}/fetch_balance", {})
    error = assert_error(response, status, code)
    assert error["fields"]["exchange_error"]
    if status == 503:
        assert int(response["Retry-After"]) >= 1
    assert post(alice_api, f"/api/v1/ccxt/{account.pk}/fetch_balance", {}).status_code == 200  # one fault, then well again


def test_a_silent_exchange_answers_504(alice_api, alice, fake, settings):
    settings.BROKER_HTTP_TIMEOUT = 0.5  # ccxt's timeout per request (the account's exchange is built with it)
    account = ccxt_account(alice, fake)
    assert post(alice_api, f"/api/v1/ccxt/{account.pk}/load_markets", {}).status_code == 200
    fake.fault("timeout", path="/api/v3/account", seconds=3)
    assert_error(post(alice_api, f"/api/v1/ccxt/{account.pk}/fetch_balance", {}), 504, "exchange_timeout")


def test_nan_and_infinities_never_reach_json():
    answer = ccxt_answer({"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": {"d": 2}, "e": (1, 2)})
    assert answer == {"a": None, "b": [None, None, 1.5], "c": {"d": 2}, "e": [1, 2]}


# --- batches -------------------------------------------------------------------------------------


def test_batch_answers_each_call_in_order(alice_api, account, fake):
    fake.fault("server_error", path="/api/v3/account")
    calls = [
        {"account_id": account.pk, "func": "fetch_ticker", "args": ["BTC/USDT"]},
        {"account_id": account.pk, "func": "fetch_balance"},
        {"account_id": account.pk, "func": "fetchOHLCV", "args": ["BTC/USDT", "1m"], "kwargs": {"limit": 3}},
    ]
    response = post(alice_api, "/api/v1/ccxt/commands", calls)
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert results[0]["ok"] is True and results[0]["result"]["symbol"] == "BTC/USDT"
    assert results[1]["ok"] is False and results[1]["error"]["code"] == "exchange_error"  # the exchange's failure of one call
    assert results[2]["ok"] is True and len(results[2]["result"]) == 3


def test_batch_limits_and_whole_validation(alice_api, account, fake):
    one = {"account_id": account.pk, "func": "fetch_time"}
    assert_error(post(alice_api, "/api/v1/ccxt/commands", [one] * (BATCH_MAX + 1)), 422, "batch_too_large")
    assert post(alice_api, "/api/v1/ccxt/commands", [one] * BATCH_MAX).status_code == 200
    assert_error(post(alice_api, "/api/v1/ccxt/commands", []), 422, "validation_error")
    assert_error(post(alice_api, "/api/v1/ccxt/commands", {"account_id": account.pk}), 422, "validation_error")
    assert_error(post(alice_api, "/api/v1/ccxt/commands", [{**one, "extra": 1}]), 422, "validation_error")
    assert_error(post(alice_api, "/api/v1/ccxt/commands", [{**one, "account_id": "1"}]), 422, "validation_error")
    before = dict(fake.calls)
    refused = post(
        alice_api,
        "/api/v1/ccxt/commands",
        [
            {"account_id": account.pk, "func": "fetch_balance"},
            {"account_id": account.pk, "func": "create_order", "args": ["BTC/USDT", "market", "buy", 1]},
        ],
    )
    error = assert_error(refused, 403, "ccxt_call_refused")
    assert error["message"].startswith("Call 1:") and "[1].func" in error["fields"]
    assert dict(fake.calls) == before  # validated whole first: nothing ran
    assert fake.orders() == []


# --- the WebSocket frame, over daphne ------------------------------------------------------------


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_ws_ccxt_call_answers_ccxts_result(live_server_process, alice, alice_key, fake):
    account = ccxt_account(alice, fake)

    async def scenario() -> list[dict[str, Any]]:
        answers = []
        headers = {"x-api-key": alice_key, "x-account-id": str(account.pk)}
        async with connect(live_server_process.ws_url, additional_headers=headers, open_timeout=5, close_timeout=2) as ws:
            for request_id, payload in [
                ("t", {"func": "fetch_ticker", "args": ["BTC/USDT"]}),
                ("b", {"func": "fetchBalance", "kwargs": {}}),
                ("o", {"func": "create_order", "args": ["BTC/USDT", "market", "buy", 1]}),
                ("x", {"func": "fetch_ticker", "args": ["BTC/USDT"], "timeout": 1}),
            ]:
                await ws.send(json.dumps({"id": request_id, "namespace": "ccxt", "action": "call", "payload": payload}))
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if frame.get("type") == "ws_response" and frame.get("id") == request_id:
                        answers.append(frame)
                        break
        return answers

    async def main() -> list[dict[str, Any]]:
        try:
            return await asyncio.wait_for(scenario(), 90)
        finally:
            await database_sync_to_async(connections.close_all)()

    ticker, balance, order, unknown = asyncio.run(main())
    assert (ticker["ok"], ticker["namespace"], ticker["action"], ticker["event"]) == (True, "ccxt", "call", "ccxt_result")
    assert ticker["payload"]["result"]["symbol"] == "BTC/USDT" and ticker["payload"]["result"]["last"] == 50000
    assert balance["payload"]["result"]["USDT"]["total"] == float(BALANCES["spot"]["USDT"])
    assert order["ok"] is False and order["payload"]["code"] == "ccxt_call_refused"
    assert unknown["ok"] is False and unknown["payload"]["code"] == "validation_error"
    assert fake.orders() == []


# --- fuzzed ----------------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@given(
    func=st.sampled_from(["fetch_ticker", "fetch_ohlcv", "fetch_order_book", "fetch_my_trades", "fetch_order", "load_markets"]),
    args=st.lists(_json, max_size=5),
    kwargs=st.dictionaries(st.sampled_from(["symbol", "limit", "since", "params", "timeframe", "id", "x"]), _json, max_size=4),
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_json_arguments_get_an_answer_or_the_error_shape_never_a_500(alice_api, account, func, args, kwargs):
    response = post(alice_api, f"/api/v1/ccxt/{account.pk}/{func}", {"args": args, "kwargs": kwargs})
    assert response.status_code != 500, response.content[:300]
    if response.status_code != 200:
        assert response.json()["error"]["code"], response.content[:300]
