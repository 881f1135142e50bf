"""KIS Open API wire facts, defined once: paths, TR ids, field orders, codes.

The adapter (client.py, ws.py) and the fake server (fake/) both speak from
these names, so one definition holds each wire shape. Facts from KIS's
published documentation and official sample client (see PROTOCOLS.md);
"(reported)" facts are the ones known only from third parties.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from decimal import Decimal

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from marketdata.venues import code_problem, symbol_compose, symbol_split, venue_get
from marketdata.venues import krx_tick_size as venue_krx_tick_size

# --- hosts (defaults of the KIS_*_URL settings) ------------------------------------------

LIVE_REST_URL = "https://openapi.koreainvestment.com:9443"
PAPER_REST_URL = "https://openapivts.koreainvestment.com:29443"
LIVE_WS_URL = "ws://ops.koreainvestment.com:21000"
PAPER_WS_URL = "ws://ops.koreainvestment.com:31000"
WS_PATH = "/tryitout"  # the official client opens <ws host>/tryitout

# --- auth ------------------------------------------------------------------------------------

TOKEN_PATH = "/oauth2/tokenP"  # noqa: S105 (a path, not a secret)
APPROVAL_PATH = "/oauth2/Approval"
REVOKE_PATH = "/oauth2/revokeP"
HASHKEY_PATH = "/uapi/hashkey"
TOKEN_ISSUE_INTERVAL = 60.0  # seconds: at most one access-token issue a minute per app key
TOKEN_EXPIRED_FORMAT = "%Y-%m-%d %H:%M:%S"  # noqa: S105 (access_token_token_expired, Korea time)
# The WS approval key carries no expiry; the official sample renews it daily.
APPROVAL_KEY_LIFETIME = 86400.0
TIMEZONE = "Asia/Seoul"  # ord_dt/ord_tmd, bar dates and hours are Korea time
DATE_FORMAT = "%Y%m%d"  # INQR_STRT_DT, ord_dt, stck_bsop_date

# --- REST paths and TR ids -----------------------------------------------------------------

ORDER_CASH_PATH = "/uapi/domestic-stock/v1/trading/order-cash"
ORDER_RVSECNCL_PATH = "/uapi/domestic-stock/v1/trading/order-rvsecncl"
INQUIRE_BALANCE_PATH = "/uapi/domestic-stock/v1/trading/inquire-balance"
INQUIRE_DAILY_CCLD_PATH = "/uapi/domestic-stock/v1/trading/inquire-daily-ccld"
INQUIRE_PRICE_PATH = "/uapi/domestic-stock/v1/quotations/inquire-price"
DAILY_CHART_PATH = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
MINUTE_CHART_PATH = "/uapi/domestic-stock/v1/quotations/inquire-time-itemchartprice"


@dataclass(frozen=True)
class TrIds:
    """The TR ids of one environment (live ids start T, paper ids V)."""

    buy: str
    sell: str
    revise_cancel: str
    balance: str
    daily_ccld: str
    fills_notice: str  # the WebSocket fill-notice TR (tr_key = HTS id)


LIVE_TR = TrIds(
    buy="TTTC0012U",
    sell="TTTC0011U",
    revise_cancel="TTTC0013U",
    balance="TTTC8434R",
    daily_ccld="TTTC0081R",
    fills_notice="H0STCNI0",
)
PAPER_TR = TrIds(
    buy="VTTC0012U",
    sell="VTTC0011U",
    revise_cancel="VTTC0013U",
    balance="VTTC8434R",
    daily_ccld="VTTC0081R",
    fills_notice="H0STCNI9",
)
# Older order TR ids still answered (the fake accepts both).
LEGACY_TR = {
    "TTTC0802U": "buy",
    "TTTC0801U": "sell",
    "VTTC0802U": "buy",
    "VTTC0801U": "sell",
    "TTTC0803U": "revise_cancel",
    "VTTC0803U": "revise_cancel",
}
PRICE_TR = "FHKST01010100"
DAILY_CHART_TR = "FHKST03010100"
MINUTE_CHART_TR = "FHKST03010200"
TRADES_TR = "H0STCNT0"
PINGPONG_TR = "PINGPONG"


# Instruments are named ``KRX:<code>`` on our wire (marketdata.venues: the venue, then KIS's PDNO).
VENUE = "KRX"
EXCHANGE_ID = "KRX"  # EXCG_ID_DVSN_CD of orders (KRX, NXT, SOR)


def kis_code(symbol: str) -> str:
    """KIS's product code (PDNO) of one of our symbols: ``KRX:005930`` -> ``005930``.
    Raises ValueError for a symbol that is not a KRX stock."""
    parts = symbol_split(symbol)
    venue = venue_get(VENUE)
    if parts is None or parts[0] != VENUE or code_problem(venue, parts[1]) is not None:
        raise ValueError(f"{symbol!r} is not a KRX instrument (KRX:<6-character code>)")
    return parts[1]


def kis_symbol(code: str) -> str:
    """Our symbol of a KIS product code: ``005930`` -> ``KRX:005930``."""
    return symbol_compose(VENUE, code.strip())


def tr_ids(environment: str) -> TrIds:
    return LIVE_TR if environment == "live" else PAPER_TR


# --- codes -----------------------------------------------------------------------------------

ORD_DVSN_LIMIT = "00"
ORD_DVSN_MARKET = "01"
RVSE_REVISE = "01"
RVSE_CANCEL = "02"
SIDE_SELL = "01"  # sll_buy_dvsn_cd
SIDE_BUY = "02"
SIDE_ALL = "00"
CCLD_ALL = "00"  # CCLD_DVSN: every order, filled or not
INQR_NEWEST_FIRST = "00"
MARKET_STOCKS = "J"  # FID_COND_MRKT_DIV_CODE of domestic stocks
RT_OK = "0"
# tr_cont in a response header: more pages follow (F, M) or this is the last (D, E).
MORE_PAGES = frozenset({"F", "M"})
# inquire-balance's fixed query fields (beside CANO, ACNT_PRDT_CD and the paging keys):
# holdings valued at the current price, the KRW summary, no fund settlement.
BALANCE_QUERY = {
    "AFHR_FLPR_YN": "N",
    "OFL_YN": "",
    "INQR_DVSN": "02",
    "UNPR_DVSN": "01",
    "FUND_STTL_ICLD_YN": "N",
    "FNCG_AMT_AUTO_RDPT_YN": "N",
    "PRCS_DVSN": "00",
}
NEXT_PAGE = "N"  # tr_cont to send for the next page

ERR_RATE_LIMIT = "EGW00201"  # per-second limit exceeded
ERR_TOKEN_EXPIRED = "EGW00123"  # noqa: S105 - access token expired (reported as HTTP 500, rt_cd "1")
ERR_TOKEN_TOO_SOON = "EGW00133"  # noqa: S105 - a token asked for within a minute of the last (reported: HTTP 403)
# Gateway codes (EGW...) come from the API gateway in front of the trading
# system: an order answered with one never reached it (reported).
GATEWAY_CODE_PREFIX = "EGW"
ERR_BAD_APP_KEY = "EGW00103"  # an unknown app key (reported)
ERR_BAD_APP_SECRET = "EGW00105"  # noqa: S105 - a wrong app secret (reported)
CREDENTIAL_ERRORS = frozenset({ERR_BAD_APP_KEY, ERR_BAD_APP_SECRET})

# Requests per second per app key (reported): settings KIS_RATE_LIVE / KIS_RATE_PAPER.
RATE_LIVE = 20.0
RATE_PAPER = 2.0
BALANCE_PAGE_LIVE = 50
BALANCE_PAGE_PAPER = 20
DAILY_CHART_MAX_ROWS = 100
MINUTE_CHART_ROWS = 30


def krx_tick_size(price: Decimal | int) -> int:
    """The KRX tick size for a price (its band's), as an int for wire
    arithmetic. The one rule is ``marketdata.venues.krx_tick_size`` (the OMS
    and the paper venue check prices with it too)."""
    return int(venue_krx_tick_size(Decimal(price)))


# --- WebSocket frames -----------------------------------------------------------------------

# H0STCNT0: one trade, 46 fields joined by "^"; a frame carries ``count`` of them.
TRADE_FIELDS = (
    "MKSC_SHRN_ISCD",
    "STCK_CNTG_HOUR",
    "STCK_PRPR",
    "PRDY_VRSS_SIGN",
    "PRDY_VRSS",
    "PRDY_CTRT",
    "WGHN_AVRG_STCK_PRC",
    "STCK_OPRC",
    "STCK_HGPR",
    "STCK_LWPR",
    "ASKP1",
    "BIDP1",
    "CNTG_VOL",
    "ACML_VOL",
    "ACML_TR_PBMN",
    "SELN_CNTG_CSNU",
    "SHNU_CNTG_CSNU",
    "NTBY_CNTG_CSNU",
    "CTTR",
    "SELN_CNTG_SMTN",
    "SHNU_CNTG_SMTN",
    "CCLD_DVSN",
    "SHNU_RATE",
    "PRDY_VOL_VRSS_ACML_VOL_RATE",
    "OPRC_HOUR",
    "OPRC_VRSS_PRPR_SIGN",
    "OPRC_VRSS_PRPR",
    "HGPR_HOUR",
    "HGPR_VRSS_PRPR_SIGN",
    "HGPR_VRSS_PRPR",
    "LWPR_HOUR",
    "LWPR_VRSS_PRPR_SIGN",
    "LWPR_VRSS_PRPR",
    "BSOP_DATE",
    "NEW_MKOP_CLS_CODE",
    "TRHT_YN",
    "ASKP_RSQN1",
    "BIDP_RSQN1",
    "TOTAL_ASKP_RSQN",
    "TOTAL_BIDP_RSQN",
    "VOL_TNRT",
    "PRDY_SMNS_HOUR_ACML_VOL",
    "PRDY_SMNS_HOUR_ACML_VOL_RATE",
    "HOUR_CLS_CODE",
    "MRKT_TRTM_CLS_CODE",
    "VI_STND_PRC",
)

# H0STCNI0 / H0STCNI9: one order or fill notice, encrypted (AES-256-CBC).
NOTICE_FIELDS = (
    "CUST_ID",
    "ACNT_NO",
    "ODER_NO",
    "OODER_NO",
    "SELN_BYOV_CLS",
    "RCTF_CLS",
    "ODER_KIND",
    "ODER_COND",
    "STCK_SHRN_ISCD",
    "CNTG_QTY",
    "CNTG_UNPR",
    "STCK_CNTG_HOUR",
    "RFUS_YN",
    "CNTG_YN",
    "ACPT_YN",
    "BRNC_NO",
    "ODER_QTY",
    "ACNT_NAME",
    "ORD_COND_PRC",
    "ORD_EXG_GB",
    "POPUP_YN",
    "FILLER",
    "CRDT_CLS",
    "CRDT_LOAN_DATE",
    "CNTG_ISNM40",
    "ODER_PRC",
)
NOTICE_FILL = "2"  # CNTG_YN: a fill; CNTG_QTY/CNTG_UNPR are this fill's quantity and price
# CNTG_YN "1": an order, revise, cancel or reject acknowledgement. In these the official
# sample reads CNTG_QTY/CNTG_UNPR as the order's quantity and price (and ODER_PRC last).
NOTICE_ACK = "1"
RCTF_NEW = "0"  # RCTF_CLS: a new order, a revise, a cancel
RCTF_REVISE = "1"
RCTF_CANCEL = "2"
SUBSCRIBE = "1"  # header tr_type
UNSUBSCRIBE = "2"
MAX_SUBSCRIPTIONS = 40  # about this many per WebSocket session
# Subscribe acks: rt_cd "0" with these msg_cd (reported), or rt_cd "1" and an error code.
# The official sample treats msg1 "ALREADY IN SUBSCRIBE" as harmless.
WS_OK_SUBSCRIBE = "OPSP0000"  # msg1 "SUBSCRIBE SUCCESS"
WS_OK_UNSUBSCRIBE = "OPSP0001"  # msg1 "UNSUBSCRIBE SUCCESS"
WS_ERR_ALREADY = "OPSP0002"
WS_ALREADY_SUBSCRIBED = "ALREADY IN SUBSCRIBE"
WS_ERR_NOT_SUBSCRIBED = "OPSP0003"
WS_ERR_MAX = "OPSP0008"  # msg1 "MAX SUBSCRIBE OVER"
WS_ERR_APPROVAL = "OPSP0011"  # msg1 "invalid approval : NOT FOUND"
WS_ERR_KEY_IN_USE = "OPSP8996"  # msg1 "ALREADY IN USE appkey": one session per app key
WS_ERR_TR_ID = "OPSP0009"  # (chosen by the fake) an unknown tr_id or tr_key
WS_ERR_JSON = "OPSP9999"  # (chosen by the fake) an unreadable request


def subscribe_message(approval_key: str, tr_id: str, tr_key: str, *, subscribe: bool = True) -> dict[str, object]:
    """The JSON a client sends to (un)subscribe ``tr_id`` for ``tr_key``."""
    return {
        "header": {
            "approval_key": approval_key,
            "custtype": "P",
            "tr_type": SUBSCRIBE if subscribe else UNSUBSCRIBE,
            "content-type": "utf-8",
        },
        "body": {"input": {"tr_id": tr_id, "tr_key": tr_key}},
    }


@dataclass(frozen=True)
class DataFrame:
    """A text data frame: ``<0|1>|<TR_ID>|<count>|<fields joined by ^>``."""

    encrypted: bool
    tr_id: str
    count: int
    payload: str


def parse_data_frame(text: str) -> DataFrame | None:
    """A data frame, or None for a JSON control frame (ack, PINGPONG).
    Raises ValueError on a frame that is neither."""
    if text[:1] in ("{", ""):
        return None
    parts = text.split("|", 3)
    if len(parts) != 4 or parts[0] not in ("0", "1") or not parts[2].isdigit():
        raise ValueError("not a KIS data frame")
    return DataFrame(encrypted=parts[0] == "1", tr_id=parts[1], count=int(parts[2]), payload=parts[3])


def split_records(payload: str, fields: tuple[str, ...], count: int) -> list[dict[str, str]]:
    """``count`` records of ``fields`` concatenated with "^"."""
    values = payload.split("^")
    width = len(fields)
    if count < 1 or len(values) < width * count:
        raise ValueError(f"expected {count} records of {width} fields, got {len(values)} values")
    return [dict(zip(fields, values[i * width : (i + 1) * width], strict=True)) for i in range(count)]


def join_records(records: list[dict[str, str]], fields: tuple[str, ...]) -> str:
    return "^".join(record.get(name, "") for record in records for name in fields)


def format_data_frame(tr_id: str, records: list[dict[str, str]], fields: tuple[str, ...], *, key: str = "", iv: str = "") -> str:
    """A data frame as KIS sends it (the count zero-padded to 3 digits, "001");
    encrypted when ``key`` is given."""
    payload = join_records(records, fields)
    if key:
        return f"1|{tr_id}|{len(records):03d}|{aes_encrypt(payload, key, iv)}"
    return f"0|{tr_id}|{len(records):03d}|{payload}"


# --- fill-notice encryption: AES-256-CBC, key and iv from the subscribe ack (UTF-8), PKCS7 ---


def aes_decrypt(data: str, key: str, iv: str) -> str:
    """Decrypt a notice payload (base64). Raises ValueError when it is not one."""
    try:
        raw = base64.b64decode(data, validate=True)
        decryptor = Cipher(algorithms.AES(key.encode()), modes.CBC(iv.encode())).decryptor()
        padded = decryptor.update(raw) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"undecryptable notice: {exc}") from None


def aes_encrypt(text: str, key: str, iv: str) -> str:
    padder = padding.PKCS7(128).padder()
    padded = padder.update(text.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key.encode()), modes.CBC(iv.encode())).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")
