"""The fake's WebSocket records, built from its state: H0STCNT0 trades and
H0STCNI0/H0STCNI9 order and fill notices (field orders in protocol)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from brokers.kis import protocol

if TYPE_CHECKING:
    from brokers.kis.fake.exchange import Account, Order, Quote

KST = ZoneInfo("Asia/Seoul")
Event = tuple[str, dict[str, Any]]  # ("trade", {...}) or ("notice", {...})


def now_kst() -> datetime:
    return datetime.now(tz=KST)


def digits(text: str) -> bool:
    """Only ASCII digits (str.isdigit also takes "²" and other scripts' digits)."""
    return text.isascii() and text.isdigit()


def plain(value: Decimal | int) -> str:
    """A number as KIS writes it: no exponent, no trailing zeros."""
    value = Decimal(value)
    return str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")


def notice_event(
    order: Order,
    account: Account,
    name: str,
    *,
    ack: bool,
    rctf: str = protocol.RCTF_NEW,
    fill_qty: int = 0,
    fill_price: Decimal = Decimal(0),
    refused: bool = False,
) -> Event:
    """An order notice (CNTG_YN 1: accepted/revised/canceled; its CNTG_QTY and
    CNTG_UNPR carry the order's quantity and price, ODER_PRC the fill price)
    or a fill notice (CNTG_YN 2: CNTG_QTY is this fill's quantity)."""
    record = {
        "CUST_ID": account.hts_id,
        "ACNT_NO": account.cano + account.product_code,
        "ODER_NO": order.odno,
        "OODER_NO": order.orgn_odno,
        "SELN_BYOV_CLS": order.side,
        "RCTF_CLS": rctf,
        "ODER_KIND": order.ord_dvsn,
        "ODER_COND": "0",
        "STCK_SHRN_ISCD": order.code,
        "CNTG_QTY": str(order.qty if ack else fill_qty),
        "CNTG_UNPR": plain(order.price if ack else fill_price),
        "STCK_CNTG_HOUR": now_kst().strftime("%H%M%S"),
        "RFUS_YN": "1" if refused else "0",
        "CNTG_YN": protocol.NOTICE_ACK if ack else protocol.NOTICE_FILL,
        "ACPT_YN": "1" if ack else "2",
        "BRNC_NO": order.orgno,
        "ODER_QTY": str(order.qty),
        "ACNT_NAME": account.name,
        "ORD_COND_PRC": "0",
        "ORD_EXG_GB": "1",
        "POPUP_YN": "Y",
        "FILLER": "",
        "CRDT_CLS": "10",
        "CRDT_LOAN_DATE": "",
        "CNTG_ISNM40": name,
        "ODER_PRC": plain(0 if ack else order.price),
    }
    return ("notice", {"app_key": account.app_key, "hts_id": account.hts_id, "environment": account.environment, "record": record})


def trade_record(quote: Quote, stamp: datetime) -> dict[str, str]:
    diff = quote.price - quote.prev_close
    sign = "2" if diff > 0 else "5" if diff < 0 else "3"  # 2 up, 3 flat, 5 down
    rate = (diff / quote.prev_close * 100).quantize(Decimal("0.01")) if quote.prev_close else Decimal(0)
    tick = protocol.krx_tick_size(quote.price)
    avg = (quote.amount / quote.volume).quantize(Decimal("0.01")) if quote.volume else quote.price
    hour = stamp.strftime("%H%M%S")
    values = {
        "MKSC_SHRN_ISCD": quote.code,
        "STCK_CNTG_HOUR": hour,
        "STCK_PRPR": plain(quote.price),
        "PRDY_VRSS_SIGN": sign,
        "PRDY_VRSS": plain(diff),
        "PRDY_CTRT": str(rate),
        "WGHN_AVRG_STCK_PRC": str(avg),
        "STCK_OPRC": plain(quote.open),
        "STCK_HGPR": plain(quote.high),
        "STCK_LWPR": plain(quote.low),
        "ASKP1": plain(quote.price + tick),
        "BIDP1": plain(quote.price),
        "CNTG_VOL": str(quote.last_qty),
        "ACML_VOL": str(quote.volume),
        "ACML_TR_PBMN": plain(quote.amount),
        "SELN_CNTG_CSNU": "0",
        "SHNU_CNTG_CSNU": "0",
        "NTBY_CNTG_CSNU": "0",
        "CTTR": "100.00",
        "SELN_CNTG_SMTN": "0",
        "SHNU_CNTG_SMTN": "0",
        "CCLD_DVSN": "1",
        "SHNU_RATE": "50.00",
        "PRDY_VOL_VRSS_ACML_VOL_RATE": "0.00",
        "OPRC_HOUR": "090000",
        "OPRC_VRSS_PRPR_SIGN": "3",
        "OPRC_VRSS_PRPR": plain(quote.price - quote.open),
        "HGPR_HOUR": hour,
        "HGPR_VRSS_PRPR_SIGN": "3",
        "HGPR_VRSS_PRPR": plain(quote.price - quote.high),
        "LWPR_HOUR": hour,
        "LWPR_VRSS_PRPR_SIGN": "3",
        "LWPR_VRSS_PRPR": plain(quote.price - quote.low),
        "BSOP_DATE": stamp.strftime("%Y%m%d"),
        "NEW_MKOP_CLS_CODE": "20",
        "TRHT_YN": "N",
        "ASKP_RSQN1": "100",
        "BIDP_RSQN1": "100",
        "TOTAL_ASKP_RSQN": "1000",
        "TOTAL_BIDP_RSQN": "1000",
        "VOL_TNRT": "0.00",
        "PRDY_SMNS_HOUR_ACML_VOL": "0",
        "PRDY_SMNS_HOUR_ACML_VOL_RATE": "0.00",
        "HOUR_CLS_CODE": "0",
        "MRKT_TRTM_CLS_CODE": "",
        "VI_STND_PRC": plain(quote.prev_close),
    }
    return values
