"""The fake KIS server answers as KIS documents, over real sockets: raw HTTP
with requests, a real WebSocket client; faults on command; the control API
and run_fake_kis from another process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from brokers.kis import protocol
from brokers.kis.fake import FakeKisServer
from tests.servers import ROOT, free_port

APP_KEY, APP_SECRET, CANO, HTS_ID = "alice-app-key", "alice-app-secret", "50000001", "alice"
TODAY = (("INQR_STRT_DT", "20200101"), ("INQR_END_DT", "20991231"))


@pytest.fixture
def kis() -> Iterator[FakeKisServer]:
    with FakeKisServer() as fake:
        fake.add_account(APP_KEY, APP_SECRET, CANO, hts_id=HTS_ID, cash_krw=Decimal("1000000"))
        fake.set_price("005930", 71000, name="Samsung Electronics")
        yield fake


def token_answer(kis: FakeKisServer, key: str = APP_KEY, secret: str = APP_SECRET) -> requests.Response:
    body = {"grant_type": "client_credentials", "appkey": key, "appsecret": secret}
    return requests.post(kis.rest_url + protocol.TOKEN_PATH, json=body, timeout=5)


def tr_headers(token: str, tr_id: str, **extra: str) -> dict[str, str]:
    return {
        "content-type": "application/json; charset=utf-8",
        "authorization": f"Bearer {token}",
        "appkey": APP_KEY,
        "appsecret": APP_SECRET,
        "tr_id": tr_id,
        "custtype": "P",
        **extra,
    }


@pytest.fixture
def token(kis: FakeKisServer) -> str:
    return token_answer(kis).json()["access_token"]


def order(
    kis: FakeKisServer, token: str, *, side: str = "buy", qty: str = "1", price: str = "0", code: str = "005930", **over: str
) -> requests.Response:
    dvsn = protocol.ORD_DVSN_MARKET if price == "0" else protocol.ORD_DVSN_LIMIT
    body = {"CANO": CANO, "ACNT_PRDT_CD": "01", "PDNO": code, "ORD_DVSN": dvsn, "ORD_QTY": qty, "ORD_UNPR": price, **over}
    tr_id = protocol.PAPER_TR.buy if side == "buy" else protocol.PAPER_TR.sell
    return requests.post(kis.rest_url + protocol.ORDER_CASH_PATH, headers=tr_headers(token, tr_id), json=body, timeout=5)


def daily_ccld(kis: FakeKisServer, token: str, tr_cont: str = "", **params: str) -> requests.Response:
    query = {
        "CANO": CANO,
        "ACNT_PRDT_CD": "01",
        **dict(TODAY),
        "SLL_BUY_DVSN_CD": "00",
        "CCLD_DVSN": "00",
        "INQR_DVSN": "00",
        "INQR_DVSN_3": "00",
        "PDNO": "",
        "ODNO": "",
        **params,
    }
    headers = tr_headers(token, protocol.PAPER_TR.daily_ccld, tr_cont=tr_cont)
    return requests.get(kis.rest_url + protocol.INQUIRE_DAILY_CCLD_PATH, headers=headers, params=query, timeout=5)


def balance(kis: FakeKisServer, token: str, tr_cont: str = "", **params: str) -> requests.Response:
    query = {
        "CANO": CANO,
        "ACNT_PRDT_CD": "01",
        **protocol.BALANCE_QUERY,
        **params,
    }
    headers = tr_headers(token, protocol.PAPER_TR.balance, tr_cont=tr_cont)
    return requests.get(kis.rest_url + protocol.INQUIRE_BALANCE_PATH, headers=headers, params=query, timeout=5)


# --- auth ---------------------------------------------------------------------------------------


def test_token_is_issued_once_a_minute_and_every_request_counted(kis: FakeKisServer) -> None:
    first = token_answer(kis)
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json; charset=UTF-8"
    body = first.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 86400
    expires = datetime.strptime(body["access_token_token_expired"], protocol.TOKEN_EXPIRED_FORMAT)  # noqa: DTZ007
    assert expires.year >= 2026

    again = token_answer(kis)
    assert again.status_code == 403
    assert again.json()["error_code"] == protocol.ERR_TOKEN_TOO_SOON
    assert kis.calls[protocol.TOKEN_PATH] == 2

    kis.configure(token_interval=0)  # a minute later: the same token again, as reported
    assert token_answer(kis).json()["access_token"] == body["access_token"]
    kis.configure(reuse_token=False)
    assert token_answer(kis).json()["access_token"] != body["access_token"]

    assert token_answer(kis, secret="wrong").json()["error_code"] == "EGW00105"
    unknown = token_answer(kis, key="nobody")
    assert unknown.status_code == 403 and unknown.json()["error_code"] == "EGW00103"
    assert kis.calls[protocol.TOKEN_PATH] == 6


def test_approval_key_takes_the_secretkey_field(kis: FakeKisServer) -> None:
    url = kis.rest_url + protocol.APPROVAL_PATH
    wrong_field = requests.post(url, json={"grant_type": "client_credentials", "appkey": APP_KEY, "appsecret": APP_SECRET}, timeout=5)
    assert wrong_field.status_code == 403
    answer = requests.post(url, json={"grant_type": "client_credentials", "appkey": APP_KEY, "secretkey": APP_SECRET}, timeout=5)
    assert answer.status_code == 200 and answer.json()["approval_key"]
    assert kis.calls[protocol.APPROVAL_PATH] == 2


def test_hashkey_and_revoke(kis: FakeKisServer, token: str) -> None:
    body = {"CANO": CANO, "ACNT_PRDT_CD": "01", "PDNO": "005930", "ORD_DVSN": "01", "ORD_QTY": "1", "ORD_UNPR": "0"}
    hashed = requests.post(kis.rest_url + protocol.HASHKEY_PATH, headers={"appkey": APP_KEY, "appsecret": APP_SECRET}, json=body, timeout=5)
    assert hashed.json()["JsonBody"] == body and len(hashed.json()["HASH"]) == 64
    revoke = {"appkey": APP_KEY, "appsecret": APP_SECRET, "token": token}
    assert requests.post(kis.rest_url + protocol.REVOKE_PATH, json=revoke, timeout=5).json()["code"] == 200
    assert daily_ccld(kis, token).json()["msg_cd"] == protocol.ERR_TOKEN_EXPIRED  # a revoked token is no token


def test_tr_calls_check_token_keys_tr_id_and_custtype(kis: FakeKisServer, token: str) -> None:
    url = kis.rest_url + protocol.INQUIRE_PRICE_PATH
    params = {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"}

    def get(headers: dict[str, str]) -> requests.Response:
        return requests.get(url, headers=headers, params=params, timeout=5)

    ok = get(tr_headers(token, protocol.PRICE_TR))
    assert ok.status_code == 200 and ok.json()["rt_cd"] == "0"
    assert ok.json()["output"]["stck_prpr"] == "71000" and ok.json()["output"]["aspr_unit"] == "100"

    unknown = get(tr_headers("not-a-token", protocol.PRICE_TR))
    assert unknown.status_code == 500 and unknown.json()["msg_cd"] == protocol.ERR_TOKEN_EXPIRED
    assert get(tr_headers(token, protocol.PRICE_TR, appsecret="wrong")).json()["msg_cd"] == "EGW00105"
    assert get(tr_headers(token, "XXXX0000")).json()["rt_cd"] == "1"
    assert get(tr_headers(token, protocol.PRICE_TR, custtype="")).json()["rt_cd"] == "1"

    # a paper app key takes V... ids (and the legacy ones), never the live T... ids
    live = order(kis, token)
    assert live.json()["rt_cd"] == "0"
    body = {"CANO": CANO, "ACNT_PRDT_CD": "01", "PDNO": "005930", "ORD_DVSN": "01", "ORD_QTY": "1", "ORD_UNPR": "0"}
    for tr_id, status in ((protocol.LIVE_TR.buy, 500), ("VTTC0802U", 200)):
        answer = requests.post(kis.rest_url + protocol.ORDER_CASH_PATH, headers=tr_headers(token, tr_id), json=body, timeout=5)
        assert answer.status_code == status, tr_id

    kis.exchange.expire_tokens()
    expired = get(tr_headers(token, protocol.PRICE_TR))
    assert expired.status_code == 500
    assert expired.json() == {"rt_cd": "1", "msg_cd": protocol.ERR_TOKEN_EXPIRED, "msg1": expired.json()["msg1"]}


# --- orders, balance, the day's orders ----------------------------------------------------------


def test_orders_show_in_daily_ccld_and_balance(kis: FakeKisServer, token: str) -> None:
    market = order(kis, token, qty="3")
    assert market.json()["msg_cd"] == "APBK0013"
    assert set(market.json()["output"]) == {"KRX_FWDG_ORD_ORGNO", "ODNO", "ORD_TMD"}
    resting = order(kis, token, qty="2", price="70000").json()["output"]["ODNO"]

    rows = {row["odno"]: row for row in daily_ccld(kis, token).json()["output1"]}
    filled = rows[market.json()["output"]["ODNO"]]
    assert (filled["tot_ccld_qty"], filled["avg_prvs"], filled["tot_ccld_amt"], filled["rmn_qty"]) == ("3", "71000", "213000", "0")
    assert (rows[resting]["tot_ccld_qty"], rows[resting]["rmn_qty"]) == ("0", "2")

    kis.set_price("005930", 69900)  # crosses the resting buy at 70000: it fills at 69900
    sells = daily_ccld(kis, token, SLL_BUY_DVSN_CD=protocol.SIDE_SELL).json()["output1"]
    assert sells == [] and len(daily_ccld(kis, token, PDNO="005930", SLL_BUY_DVSN_CD=protocol.SIDE_BUY).json()["output1"]) == 2
    row = daily_ccld(kis, token, ODNO=resting).json()["output1"]
    assert [(r["odno"], r["tot_ccld_qty"], r["avg_prvs"], r["rmn_qty"]) for r in row] == [(resting, "2", "69900", "0")]

    answer = balance(kis, token).json()
    (holding,) = answer["output1"]
    assert (holding["pdno"], holding["hldg_qty"], holding["prpr"]) == ("005930", "5", "69900")
    assert answer["output2"][0]["dnca_tot_amt"] == str(1000000 - 213000 - 139800)

    sell_too_many = order(kis, token, side="sell", qty="6")
    assert sell_too_many.status_code == 200 and sell_too_many.json()["rt_cd"] == "1"
    assert order(kis, token, qty="1", price="70050").json()["rt_cd"] == "1"  # off the 100-won grid
    assert order(kis, token, qty="100").json()["rt_cd"] == "1"  # not enough cash
    assert order(kis, token, qty="0").json()["rt_cd"] == "1"
    assert order(kis, token, CANO="59999999").json()["rt_cd"] == "1"
    assert order(kis, token, code="12345").json()["rt_cd"] == "1"
    raw = {"CANO": CANO, "ACNT_PRDT_CD": "01", "PDNO": "005930", "ORD_DVSN": "01", "ORD_QTY": 1, "ORD_UNPR": "0"}
    headers = tr_headers(token, protocol.PAPER_TR.buy)
    assert requests.post(kis.rest_url + protocol.ORDER_CASH_PATH, headers=headers, json=raw, timeout=5).json()["rt_cd"] == "1"


def test_revise_and_cancel_touch_only_the_unfilled_remainder(kis: FakeKisServer, token: str) -> None:
    kis.configure(partial_fill_qty=1)
    odno = order(kis, token, qty="3", price="70000").json()["output"]["ODNO"]
    kis.set_price("005930", 70000)  # one share fills

    def rvsecncl(kind: str, **over: str) -> dict[str, Any]:
        body = {
            "CANO": CANO,
            "ACNT_PRDT_CD": "01",
            "KRX_FWDG_ORD_ORGNO": "91252",
            "ORGN_ODNO": odno,
            "ORD_DVSN": "00",
            "RVSE_CNCL_DVSN_CD": kind,
            "ORD_QTY": "0",
            "ORD_UNPR": "0",
            "QTY_ALL_ORD_YN": "Y",
            **over,
        }
        headers = tr_headers(token, protocol.PAPER_TR.revise_cancel)
        return requests.post(kis.rest_url + protocol.ORDER_RVSECNCL_PATH, headers=headers, json=body, timeout=5).json()

    revised = rvsecncl(protocol.RVSE_REVISE, ORD_UNPR="69000", QTY_ALL_ORD_YN="N", ORD_QTY="1")
    assert revised["rt_cd"] == "0"
    canceled = rvsecncl(protocol.RVSE_CANCEL)
    assert canceled["rt_cd"] == "0"
    assert rvsecncl(protocol.RVSE_CANCEL)["rt_cd"] == "1"  # nothing left to cancel
    rows = {r["odno"]: r for r in daily_ccld(kis, token).json()["output1"]}
    original = rows[odno]
    assert (original["tot_ccld_qty"], original["cnc_cfrm_qty"], original["rmn_qty"]) == ("1", "2", "0")
    assert rows[canceled["output"]["ODNO"]]["cncl_yn"] == "Y"
    assert rows[revised["output"]["ODNO"]]["orgn_odno"] == odno


def test_pages_follow_tr_cont_and_echo_the_context(kis: FakeKisServer, token: str) -> None:
    kis.configure(daily_ccld_page_size=2, balance_page_size=2)
    for _ in range(5):
        order(kis, token, qty="1", price="60000")
    pages, conts, tr_cont, ctx = [], [], "", {}
    while True:
        answer = daily_ccld(kis, token, tr_cont, **ctx)
        body = answer.json()
        pages.append([row["odno"] for row in body["output1"]])
        conts.append(answer.headers["tr_cont"])
        assert body["output2"]["tot_ord_qty"] == "5"
        if answer.headers["tr_cont"] not in protocol.MORE_PAGES:
            break
        tr_cont = protocol.NEXT_PAGE
        ctx = {"CTX_AREA_FK100": body["ctx_area_fk100"], "CTX_AREA_NK100": body["ctx_area_nk100"]}
    assert conts == ["F", "M", "E"]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sum(pages, []) == sorted(sum(pages, []), reverse=True)  # newest first, none twice

    for code in ("000660", "035420", "035720"):
        kis.add_holding(CANO, code, 1, 10000, code)
    first = balance(kis, token)
    assert first.headers["tr_cont"] == "F" and len(first.json()["output1"]) == 2
    ctx = {"CTX_AREA_FK100": first.json()["ctx_area_fk100"], "CTX_AREA_NK100": first.json()["ctx_area_nk100"]}
    last = balance(kis, token, protocol.NEXT_PAGE, **ctx)
    assert last.headers["tr_cont"] == "E" and [r["pdno"] for r in last.json()["output1"]] == ["035720"]


def test_explicit_fills_rejects_and_the_rate_limit(kis: FakeKisServer, token: str) -> None:
    odno = order(kis, token, qty="5", price="70000").json()["output"]["ODNO"]
    kis.fill(odno, qty=2)
    kis.reject(odno)
    (row,) = daily_ccld(kis, token, ODNO=odno).json()["output1"]
    assert (row["tot_ccld_qty"], row["avg_prvs"], row["rjct_qty"], row["rmn_qty"]) == ("2", "70000", "3", "0")
    assert balance(kis, token).json()["output2"][0]["dnca_tot_amt"] == str(1000000 - 140000)

    kis.configure(rate_per_second=2)  # paper's reported limit
    codes = [daily_ccld(kis, token).json()["msg_cd"] for _ in range(3)]
    assert codes.count(protocol.ERR_RATE_LIMIT) >= 1


def quotation(kis: FakeKisServer, token: str, path: str, tr_id: str, **params: str) -> dict[str, Any]:
    query = {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930", **params}
    return requests.get(kis.rest_url + path, headers=tr_headers(token, tr_id), params=query, timeout=5).json()


def test_charts(kis: FakeKisServer, token: str) -> None:
    daily = quotation(
        kis,
        token,
        protocol.DAILY_CHART_PATH,
        protocol.DAILY_CHART_TR,
        FID_INPUT_DATE_1="20200101",
        FID_INPUT_DATE_2="20991231",
        FID_PERIOD_DIV_CODE="D",
        FID_ORG_ADJ_PRC="0",
    )
    assert len(daily["output2"]) == protocol.DAILY_CHART_MAX_ROWS
    dates = [row["stck_bsop_date"] for row in daily["output2"]]
    assert dates == sorted(dates, reverse=True)
    weekly = quotation(
        kis,
        token,
        protocol.DAILY_CHART_PATH,
        protocol.DAILY_CHART_TR,
        FID_INPUT_DATE_1="20200101",
        FID_INPUT_DATE_2="20991231",
        FID_PERIOD_DIV_CODE="W",
    )
    assert len(weekly["output2"]) == protocol.DAILY_CHART_MAX_ROWS
    minute = quotation(
        kis,
        token,
        protocol.MINUTE_CHART_PATH,
        protocol.MINUTE_CHART_TR,
        FID_INPUT_HOUR_1="235900",
        FID_ETC_CLS_CODE="",
        FID_PW_DATA_INCU_YN="Y",
    )
    assert len(minute["output2"]) == protocol.MINUTE_CHART_ROWS
    assert {"stck_cntg_hour", "stck_prpr", "stck_oprc", "stck_hgpr", "stck_lwpr", "cntg_vol"} <= set(minute["output2"][0])


# --- WebSocket ------------------------------------------------------------------------------------


def approval_key(kis: FakeKisServer) -> str:
    body = {"grant_type": "client_credentials", "appkey": APP_KEY, "secretkey": APP_SECRET}
    return requests.post(kis.rest_url + protocol.APPROVAL_PATH, json=body, timeout=5).json()["approval_key"]


def subscribe(ws: ClientConnection, key: str, tr_id: str, tr_key: str, tr_type: str = protocol.SUBSCRIBE) -> dict[str, Any]:
    header = {"approval_key": key, "custtype": "P", "tr_type": tr_type, "content-type": "utf-8"}
    ws.send(json.dumps({"header": header, "body": {"input": {"tr_id": tr_id, "tr_key": tr_key}}}))
    return next_json(ws)


def next_json(ws: ClientConnection) -> dict[str, Any]:
    while True:
        text = str(ws.recv(timeout=3))
        if text.startswith("{") and '"PINGPONG"' not in text:
            return json.loads(text)


def next_frame(ws: ClientConnection, tr_id: str) -> protocol.DataFrame:
    while True:
        frame = protocol.parse_data_frame(str(ws.recv(timeout=3)))
        if frame is not None and frame.tr_id == tr_id:
            return frame


def test_fill_notices_decrypt_with_the_ack_key_and_trades_have_46_fields(kis: FakeKisServer, token: str) -> None:
    with connect(kis.ws_url + protocol.WS_PATH, open_timeout=3) as ws:
        key = approval_key(kis)
        ack = subscribe(ws, key, protocol.PAPER_TR.fills_notice, HTS_ID)
        assert ack["body"]["rt_cd"] == "0" and ack["body"]["msg1"] == "SUBSCRIBE SUCCESS"
        aes_key, iv = ack["body"]["output"]["key"], ack["body"]["output"]["iv"]
        assert (len(aes_key), len(iv)) == (32, 16)
        assert subscribe(ws, key, protocol.TRADES_TR, "005930")["body"]["rt_cd"] == "0"

        odno = order(kis, token, qty="2").json()["output"]["ODNO"]
        notices = []
        for _ in range(2):
            frame = next_frame(ws, protocol.PAPER_TR.fills_notice)
            assert frame.encrypted and frame.count == 1
            notices += protocol.split_records(protocol.aes_decrypt(frame.payload, aes_key, iv), protocol.NOTICE_FIELDS, 1)
        assert all(len(n) == 26 and n["ODER_NO"] == odno and n["CUST_ID"] == HTS_ID for n in notices)
        assert [n["CNTG_YN"] for n in notices] == [protocol.NOTICE_ACK, protocol.NOTICE_FILL]
        assert (notices[1]["CNTG_QTY"], notices[1]["CNTG_UNPR"], notices[1]["SELN_BYOV_CLS"]) == ("2", "71000", protocol.SIDE_BUY)

        kis.set_price("005930", 71100)
        frame = next_frame(ws, protocol.TRADES_TR)
        raw_count = frame.payload.count("^") + 1
        (trade,) = protocol.split_records(frame.payload, protocol.TRADE_FIELDS, frame.count)
        assert raw_count == 46 and trade["MKSC_SHRN_ISCD"] == "005930" and trade["STCK_PRPR"] == "71100"

        kis.set_prices("005930", [71200, 71300, 71000])  # one frame, three records
        frame = next_frame(ws, protocol.TRADES_TR)
        assert frame.count == 3 and frame.payload.count("^") + 1 == 3 * 46
        trades = protocol.split_records(frame.payload, protocol.TRADE_FIELDS, frame.count)
        assert [t["STCK_PRPR"] for t in trades] == ["71200", "71300", "71000"]


def test_websocket_refuses_bad_keys_too_many_subscriptions_and_counts_pongs(kis: FakeKisServer) -> None:
    kis.configure(ping_interval=0.1)
    with connect(kis.ws_url + protocol.WS_PATH, open_timeout=3) as ws:
        refused = subscribe(ws, "not-an-approval-key", protocol.TRADES_TR, "005930")["body"]
        assert (refused["rt_cd"], refused["msg_cd"]) == ("1", protocol.WS_ERR_APPROVAL)
        key = approval_key(kis)
        for n in range(protocol.MAX_SUBSCRIPTIONS):
            assert subscribe(ws, key, protocol.TRADES_TR, f"{n:06d}")["body"]["rt_cd"] == "0"
        over = subscribe(ws, key, protocol.TRADES_TR, "999999")["body"]
        assert (over["rt_cd"], over["msg_cd"]) == ("1", protocol.WS_ERR_MAX)
        assert subscribe(ws, key, protocol.TRADES_TR, "000001")["body"]["msg1"] == protocol.WS_ALREADY_SUBSCRIBED
        assert subscribe(ws, key, protocol.TRADES_TR, "000001", protocol.UNSUBSCRIBE)["body"]["rt_cd"] == "0"
        with connect(kis.ws_url + protocol.WS_PATH, open_timeout=3) as second:  # one session per app key
            in_use = subscribe(second, key, protocol.TRADES_TR, "005930")["body"]
            assert (in_use["rt_cd"], in_use["msg_cd"]) == ("1", protocol.WS_ERR_KEY_IN_USE)

        while True:  # PINGPONG: answered with a WebSocket pong carrying the same payload
            text = str(ws.recv(timeout=3))
            if '"PINGPONG"' in text:
                assert json.loads(text)["header"]["datetime"].isdigit()
                ws.pong(text)
                break
        deadline = time.monotonic() + 3
        while kis.pongs_received < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert kis.pongs_received >= 1 and kis.pings_sent >= 1


# --- faults ---------------------------------------------------------------------------------------


def test_each_fault_answers_its_way_then_is_used_up(kis: FakeKisServer, token: str) -> None:
    kis.fault("slow", seconds=0.3)
    started = time.monotonic()
    assert daily_ccld(kis, token).json()["rt_cd"] == "0"
    assert time.monotonic() - started >= 0.3

    kis.fault("http_500")
    assert daily_ccld(kis, token).status_code == 500
    kis.fault("token_expired")
    expired = daily_ccld(kis, token)
    assert (expired.status_code, expired.json()["rt_cd"], expired.json()["msg_cd"]) == (500, "1", protocol.ERR_TOKEN_EXPIRED)
    kis.fault("rate_limit", count=2)
    assert [daily_ccld(kis, token).json()["msg_cd"] for _ in range(3)] == [protocol.ERR_RATE_LIMIT] * 2 + ["MCA00000"]

    kis.configure(token_interval=0)
    kis.fault("token_too_soon")
    too_soon = token_answer(kis)
    assert too_soon.status_code == 403 and set(too_soon.json()) == {"error_code", "error_description"}

    kis.fault("malformed", path=protocol.INQUIRE_PRICE_PATH)  # targets one path only
    assert daily_ccld(kis, token).json()["rt_cd"] == "0"
    with pytest.raises(ValueError):
        quotation(kis, token, protocol.INQUIRE_PRICE_PATH, protocol.PRICE_TR)

    kis.fault("lose_response", path=protocol.ORDER_CASH_PATH)
    with pytest.raises(requests.ConnectionError):
        order(kis, token, qty="1")
    booked = daily_ccld(kis, token, CCLD_DVSN="01").json()["output1"]
    assert len(booked) == 1 and booked[0]["tot_ccld_qty"] == "1"  # accepted and filled, the answer lost

    with connect(kis.ws_url + protocol.WS_PATH, open_timeout=3) as ws:
        assert subscribe(ws, approval_key(kis), protocol.TRADES_TR, "005930")["body"]["rt_cd"] == "0"
        kis.fault("ws_drop")
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=3)


# --- another process ------------------------------------------------------------------------------


def test_run_fake_kis_is_driven_through_the_control_api() -> None:
    port, ws_port = free_port(), free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "manage.py", "run_fake_kis", "--port", str(port), "--ws-port", str(ws_port), "--demo", "--tick", "0.1"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                requests.get(base + "/_fake/calls", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode() if proc.stderr else ""
                time.sleep(0.1)

        def control(name: str, **body: Any) -> dict[str, Any]:
            answer = requests.post(f"{base}/_fake/{name}", json=body, timeout=5)
            assert answer.status_code == 200, answer.text
            return answer.json()

        control("add_account", app_key="bob-key", app_secret="bob-secret", cano="50000002", hts_id="bob", cash_krw="5000000")
        control("set_price", code="000100", price="50000")
        control("add_holding", cano="50000002", code="000100", qty=3, avg_price="48000")
        assert requests.post(f"{base}/_fake/fault", json={"kind": "nonsense"}, timeout=5).status_code == 400
        control("fault", kind="http_500", path=protocol.TOKEN_PATH)
        body = {"grant_type": "client_credentials", "appkey": "bob-key", "appsecret": "bob-secret"}
        assert requests.post(base + protocol.TOKEN_PATH, json=body, timeout=5).status_code == 500
        token = requests.post(base + protocol.TOKEN_PATH, json=body, timeout=5).json()["access_token"]
        headers = {
            "authorization": f"Bearer {token}",
            "appkey": "bob-key",
            "appsecret": "bob-secret",
            "tr_id": protocol.PAPER_TR.balance,
            "custtype": "P",
        }
        held = requests.get(
            base + protocol.INQUIRE_BALANCE_PATH, headers=headers, params={"CANO": "50000002", "ACNT_PRDT_CD": "01"}, timeout=5
        ).json()
        assert [(r["pdno"], r["hldg_qty"]) for r in held["output1"]] == [("000100", "3")]
        calls = requests.get(f"{base}/_fake/calls", timeout=5).json()["calls"]
        assert calls[protocol.TOKEN_PATH] == 2 and calls[protocol.INQUIRE_BALANCE_PATH] == 1
        control("reset", calls=True)
        assert requests.get(f"{base}/_fake/calls", timeout=5).json()["calls"] == {}
        assert requests.get(f"{base}/_fake/orders", timeout=5).json() == {"orders": []}
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_hostile_requests_get_answers_and_stop_closes_everything_promptly() -> None:
    fake = FakeKisServer().start()
    fake.add_account(APP_KEY, APP_SECRET, CANO)
    session = requests.Session()  # a keep-alive connection left open
    token = session.post(
        fake.rest_url + protocol.TOKEN_PATH,
        json={"grant_type": "client_credentials", "appkey": APP_KEY, "appsecret": APP_SECRET},
        timeout=5,
    ).json()["access_token"]
    junk = session.get(
        fake.rest_url + protocol.INQUIRE_PRICE_PATH,
        headers=tr_headers(token, protocol.PRICE_TR),
        params={f"K{n}": "v" for n in range(200)},
        timeout=5,
    )
    assert junk.status_code == 200 and junk.json()["rt_cd"] == "1"
    not_json = session.post(
        fake.rest_url + protocol.ORDER_CASH_PATH, headers=tr_headers(token, protocol.PAPER_TR.buy), data=b"\xff{", timeout=5
    )
    assert not_json.status_code == 200 and not_json.json()["rt_cd"] == "1"
    fake.set_price("005930", 71000)
    for qty, price in (("²", "71000"), ("9" * 5000, "71000"), ("1", "٧١٠٠٠"), ("1", "9" * 5000)):
        body = {"CANO": CANO, "ACNT_PRDT_CD": "01", "PDNO": "005930", "ORD_DVSN": "00", "ORD_QTY": qty, "ORD_UNPR": price}
        refused = session.post(
            fake.rest_url + protocol.ORDER_CASH_PATH, headers=tr_headers(token, protocol.PAPER_TR.buy), json=body, timeout=5
        )
        assert refused.status_code == 200 and refused.json()["rt_cd"] == "1", (qty[:5], price[:5])
    assert session.post(fake.rest_url + protocol.TOKEN_PATH, data=b"[]", timeout=5).status_code == 403
    assert session.get(fake.rest_url + "/nowhere", timeout=5).status_code == 404

    with connect(fake.ws_url + protocol.WS_PATH, open_timeout=3) as ws:
        ws.send("not json")
        assert json.loads(str(ws.recv(timeout=3)))["body"]["rt_cd"] == "1"
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 3
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=3)
    with pytest.raises(requests.ConnectionError):
        requests.get(fake.rest_url + "/_fake/calls", timeout=2)
    session.close()


def test_state_file_keeps_accounts_orders_and_tokens_across_restarts(tmp_path: Any) -> None:
    path = tmp_path / "fake_kis.json"
    with FakeKisServer(state_path=path) as first:
        first.add_account(APP_KEY, APP_SECRET, CANO, hts_id=HTS_ID, cash_krw=Decimal("1000000"))
        first.set_price("005930", 71000)
        token = token_answer(first).json()["access_token"]
        filled = order(first, token, qty="2").json()["output"]["ODNO"]
        resting = order(first, token, qty="1", price="70000").json()["output"]["ODNO"]
        cash = balance(first, token).json()["output2"][0]["dnca_tot_amt"]

    with FakeKisServer(state_path=path) as second:  # the same day: all as it was, the token still good
        assert second.state_loaded
        rows = {r["odno"]: r for r in daily_ccld(second, token).json()["output1"]}
        assert (rows[filled]["tot_ccld_qty"], rows[resting]["rmn_qty"]) == ("2", "1")
        assert balance(second, token).json()["output2"][0]["dnca_tot_amt"] == cash
        assert order(second, token, qty="1").json()["output"]["ODNO"] > resting

    state = json.loads(path.read_text())  # as if saved yesterday: the open day order expires
    state["date"] = "20000101"
    for row in state["orders"]:
        row["ord_dt"] = "20000101"
    path.write_text(json.dumps(state))
    with FakeKisServer(state_path=path) as third:
        expired = next(o for o in third.orders() if o["odno"] == resting)
        assert (expired["remaining"], expired["canceled_qty"]) == (0, 1)
        summary = balance(third, token).json()["output2"][0]
        assert summary["dnca_tot_amt"] == summary["nxdy_excc_amt"] == str(1000000 - 3 * 71000)  # its reservation released


def test_concurrent_orders_are_each_booked_once(kis: FakeKisServer, token: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def buy(_: int) -> str:
        return str(order(kis, token, qty="1").json()["output"]["ODNO"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        numbers = list(pool.map(buy, range(12)))
    assert len(set(numbers)) == 12
    kis.configure(daily_ccld_page_size=100)
    totals = daily_ccld(kis, token).json()["output2"]
    assert (totals["tot_ord_qty"], totals["tot_ccld_qty"], totals["tot_ccld_amt"]) == ("12", "12", str(12 * 71000))
    assert balance(kis, token).json()["output2"][0]["dnca_tot_amt"] == str(1000000 - 12 * 71000)
