"""KIS REST client: configuration, tokens, pacing, TR headers, paging, errors.

What each failure means for an order (the Broker protocol's error types):

* Nothing was sent (connection refused, DNS, connect timeout, our pacing, a
  token we could not get): ``BrokerUnavailable`` / ``BrokerRateLimited``.
* An answer that proves the order was refused: ``rt_cd`` not ``"0"``. A
  gateway code (``EGW...``) means the API gateway turned it away before the
  trading system saw it: ``EGW00123`` (token expired) is retried once after
  a refresh, ``EGW00201`` is ``BrokerRateLimited``, another ``EGW`` code is
  ``BrokerUnavailable`` (safe to send later). Any other code is the trading
  system's refusal: ``BrokerRejected`` (``msg_cd`` and ``msg1``, never a secret).
* Anything else after the request left (read timeout, connection dropped,
  a 5xx or a body without ``rt_cd``, malformed JSON): for an order the
  outcome is unknown, ``BrokerTimeout``, and it is never sent again (the OMS
  settles it from the daily-orders query); for a read it is
  ``BrokerUnavailable`` (ask again later).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from brokers.base import BrokerAuthExpired, BrokerError, BrokerRateLimited, BrokerRejected, BrokerTimeout, BrokerUnavailable
from brokers.crypto import CredentialError, decrypt_json
from brokers.kis import protocol
from brokers.models import BrokerAccount, Environment
from brokers.pacing import pace
from brokers.tokens import (
    IssuedToken,
    TokenIssueTooSoon,
    TokenKey,
    TokenRequestNotSent,
    credential_id,
    token_get,
    token_invalidate,
    token_refresh,
    token_state,
)

logger = logging.getLogger(__name__)

ACCESS_TOKEN = "access_token"  # noqa: S105 - a token's name, not a token
APPROVAL_KEY = "approval_key"
ACCESS_TOKEN_MIN_INTERVAL = protocol.TOKEN_ISSUE_INTERVAL
# KIS states no issue rule for approval keys; a short interval still keeps a
# failing credential from being hammered.
APPROVAL_KEY_MIN_INTERVAL = 10.0
MAX_SESSIONS = 32  # one pooled HTTP session per (server, credential), least recently used dropped
POOL_SIZE = 4  # connections per session
ORDER_PACE_WAIT = 1.0  # seconds an order may wait for a request slot before BrokerRateLimited
READ_PACE_WAIT = 5.0


class KisCredentialsRefused(BrokerRejected):
    """KIS refused the app key or secret (wrong, revoked, or for the other environment)."""


@dataclass(frozen=True)
class KisConfig:
    """Where and as whom one KIS account talks. Secrets never appear in its repr."""

    rest_url: str
    ws_url: str
    environment: str  # paper | live
    app_key: str = field(repr=False)
    app_secret: str = field(repr=False)
    cano: str  # the 8-digit account number (CANO)
    product_code: str  # the 2-digit product code (ACNT_PRDT_CD)
    hts_id: str = ""  # the HTS user id: tr_key of the fill notices
    timeout: float = 10.0

    @property
    def credential_id(self) -> str:
        """A one-way digest of the app key: pacing and token keys, logs."""
        return credential_id(self.app_key)

    @property
    def tr(self) -> protocol.TrIds:
        return protocol.tr_ids(self.environment)


def kis_config_for(account: BrokerAccount) -> KisConfig:
    """The configuration of a KIS account: URLs from the settings, identity
    from the account's fields, secrets from its encrypted credentials.
    Raises BrokerRejected for an account KIS could never accept (nothing is
    sent) and BrokerUnavailable when its credentials cannot be read."""
    live = account.environment == Environment.LIVE
    try:
        credentials = decrypt_json(account.credentials_encrypted) if account.credentials_encrypted else {}
    except CredentialError as exc:
        raise BrokerUnavailable("The account's KIS credentials cannot be read (encryption key).") from exc
    app_key, app_secret = str(credentials.get("app_key") or ""), str(credentials.get("app_secret") or "")
    if not app_key or not app_secret:
        raise BrokerRejected("The account has no KIS app key and secret.")
    cano, product = account.broker_account_number.strip(), account.broker_product_code.strip()
    if not (cano.isascii() and cano.isdigit() and len(cano) == 8):
        raise BrokerRejected("The account's KIS account number (CANO) must be 8 digits.")
    if not (product.isascii() and product.isdigit() and len(product) == 2):
        raise BrokerRejected("The account's KIS product code (ACNT_PRDT_CD) must be 2 digits.")
    return KisConfig(
        rest_url=(settings.KIS_LIVE_REST_URL if live else settings.KIS_PAPER_REST_URL).rstrip("/"),
        ws_url=(settings.KIS_LIVE_WS_URL if live else settings.KIS_PAPER_WS_URL).rstrip("/"),
        environment=Environment.LIVE if live else Environment.PAPER,
        app_key=app_key,
        app_secret=app_secret,
        cano=cano,
        product_code=product,
        hts_id=(account.broker_user_id or str(credentials.get("hts_id") or "")).strip(),
        timeout=float(settings.BROKER_HTTP_TIMEOUT),
    )


# --- pooled sessions -------------------------------------------------------------------------

_sessions: OrderedDict[tuple[str, str], requests.Session] = OrderedDict()
_sessions_lock = threading.Lock()


def _session(config: KisConfig) -> requests.Session:
    """The process's session for this server and credential (kept-alive
    connections, a bounded pool, no automatic retries: a retried order
    could execute twice)."""
    key = (config.rest_url, config.credential_id)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is not None:
            _sessions.move_to_end(key)
            return session
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _sessions[key] = session
        while len(_sessions) > MAX_SESSIONS:
            _, dropped = _sessions.popitem(last=False)
            dropped.close()
        return session


# --- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KisResponse:
    """One TR answer: the JSON body and the paging header."""

    body: dict[str, Any]
    tr_cont: str = ""

    @property
    def more(self) -> bool:
        return self.tr_cont in protocol.MORE_PAGES

    def rows(self, name: str) -> list[dict[str, Any]]:
        """``output1``/``output2``/``output``: a list of rows (one object is one row)."""
        value = self.body.get(name)
        if value is None or value == "":
            return []
        if isinstance(value, dict):
            return [value]
        if isinstance(value, list) and all(isinstance(row, dict) for row in value):
            return value
        raise BrokerUnavailable(f"KIS answered a malformed {name}.")

    def one(self, name: str = "output") -> dict[str, Any]:
        rows = self.rows(name)
        if not rows:
            raise BrokerUnavailable(f"KIS answered without {name}.")
        return rows[0]


def _message(body: Mapping[str, Any]) -> str:
    code = str(body.get("msg_cd") or body.get("error_code") or "").strip()
    text = str(body.get("msg1") or body.get("error_description") or "").strip()
    return f"{code}: {text}" if code and text else code or text or "no message"


def _code(body: Mapping[str, Any]) -> str:
    return str(body.get("msg_cd") or body.get("error_code") or "").strip()


def _json(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _before_sending(exc: requests.RequestException) -> bool:
    """Whether the request surely never reached the server (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
        name = type(reason).__name__
        return name in ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError")
    return False


class _TokenExpired(Exception):
    """EGW00123: the gateway refused the call (nothing executed); refresh and retry once."""

    def __init__(self, token: str) -> None:
        super().__init__("KIS access token expired (EGW00123)")
        self.token = token  # to invalidate exactly this one; never in the message


# --- the client --------------------------------------------------------------------------------


class KisClient:
    """One KIS credential and account: tokens, pacing, TR calls."""

    def __init__(self, config: KisConfig) -> None:
        self.config = config
        self.session = _session(config)

    # --- tokens --------------------------------------------------------------------------------

    def _key(self, name: str) -> TokenKey:
        return TokenKey(kind="kis", environment=self.config.environment, credential=self.config.app_key, name=name)

    def access_token(self) -> str:
        """The cached access token, issued when missing or about to expire
        (one issuer across processes, at most one issue a minute)."""
        return token_get(self._key(ACCESS_TOKEN), self._issue_access_token, min_interval=ACCESS_TOKEN_MIN_INTERVAL)

    def approval_key(self) -> str:
        """The cached WebSocket approval key."""
        return token_get(self._key(APPROVAL_KEY), self._issue_approval_key, min_interval=APPROVAL_KEY_MIN_INTERVAL)

    def refresh_access_token(self) -> IssuedToken:
        """Issue a new access token now (TokenIssueTooSoon inside the minute)."""
        return token_refresh(self._key(ACCESS_TOKEN), self._issue_access_token, min_interval=ACCESS_TOKEN_MIN_INTERVAL)

    def refresh_approval_key(self) -> IssuedToken:
        return token_refresh(self._key(APPROVAL_KEY), self._issue_approval_key, min_interval=APPROVAL_KEY_MIN_INTERVAL)

    def token_status(self) -> dict[str, dict[str, Any]]:
        """Both tokens' state and expiry, never their values."""
        status: dict[str, dict[str, Any]] = {}
        for name in (ACCESS_TOKEN, APPROVAL_KEY):
            state = token_state(self._key(name))
            status[name] = {
                "present": state.present,
                "valid": state.valid,
                "issued_at": state.issued_at.isoformat() if state.issued_at else None,
                "expires_at": state.expires_at.isoformat() if state.expires_at else None,
                "last_attempt_at": state.last_attempt_at.isoformat() if state.last_attempt_at else None,
                "last_error": state.last_error,
            }
        return status

    def _issue_access_token(self) -> IssuedToken:
        body = self._auth_post(
            protocol.TOKEN_PATH,
            {"grant_type": "client_credentials", "appkey": self.config.app_key, "appsecret": self.config.app_secret},
        )
        value = body.get("access_token")
        if not isinstance(value, str) or not value:
            raise BrokerUnavailable("KIS answered the token request without a token.")
        return IssuedToken(value=value, expires_at=_token_expiry(body))

    def _issue_approval_key(self) -> IssuedToken:
        body = self._auth_post(
            protocol.APPROVAL_PATH,
            {"grant_type": "client_credentials", "appkey": self.config.app_key, "secretkey": self.config.app_secret},
        )
        value = body.get("approval_key")
        if not isinstance(value, str) or not value:
            raise BrokerUnavailable("KIS answered the approval request without a key.")
        return IssuedToken(value=value, expires_at=datetime.now(UTC) + timedelta(seconds=protocol.APPROVAL_KEY_LIFETIME))

    def _auth_post(self, path: str, payload: dict[str, str]) -> dict[str, Any]:
        try:
            response = self.session.post(
                self.config.rest_url + path,
                json=payload,
                headers={"content-type": "application/json; charset=utf-8"},
                timeout=self.config.timeout,
            )
        except requests.RequestException as exc:
            if _before_sending(exc):
                raise TokenRequestNotSent(f"KIS token server unreachable ({type(exc).__name__}).") from None
            raise BrokerUnavailable(f"KIS token server did not answer ({type(exc).__name__}).") from None
        body = _json(response)
        if body is None:
            raise BrokerUnavailable(f"KIS answered the token request with a malformed body (HTTP {response.status_code}).")
        if _code(body) == protocol.ERR_TOKEN_TOO_SOON:
            raise TokenIssueTooSoon("KIS issues one token a minute per app key.", retry_after=protocol.TOKEN_ISSUE_INTERVAL)
        if response.status_code >= 500:
            raise BrokerUnavailable(f"KIS token server error (HTTP {response.status_code}: {_message(body)}).")
        if response.status_code >= 400 or (body.get("rt_cd") not in (None, protocol.RT_OK)):
            raise KisCredentialsRefused(f"KIS refused the app key or secret ({_message(body)}).")
        return body

    # --- TR calls ---------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        tr_id: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, str] | None = None,
        tr_cont: str = "",
        order: bool = False,
    ) -> KisResponse:
        """One TR call with its headers. ``order`` marks a call that changes
        something at the broker (its unknown outcomes are BrokerTimeout).
        An expired token (EGW00123) is refreshed once and the call retried
        once: the gateway refused it, so nothing was executed."""
        try:
            return self._request_once(
                method, path, tr_id, params=params, body=body, tr_cont=tr_cont, order=order, token=self.access_token()
            )
        except _TokenExpired as expired:
            token_invalidate(self._key(ACCESS_TOKEN), expired.token)
        try:
            token = self.access_token()  # another process may have refreshed it already
        except TokenIssueTooSoon as exc:
            raise BrokerRateLimited(f"KIS token expired and cannot be re-issued yet: {exc.message}", retry_after=exc.retry_after) from None
        try:
            return self._request_once(method, path, tr_id, params=params, body=body, tr_cont=tr_cont, order=order, token=token)
        except _TokenExpired:
            raise BrokerAuthExpired("KIS refused a freshly issued access token (EGW00123).") from None

    def _request_once(
        self,
        method: str,
        path: str,
        tr_id: str,
        *,
        params: Mapping[str, str] | None,
        body: Mapping[str, str] | None,
        tr_cont: str,
        order: bool,
        token: str,
    ) -> KisResponse:
        # An order waits little for its slot (a trader is waiting); reads, mostly
        # background work paging through lists, wait longer before giving up.
        pace(
            f"kis:{self.config.credential_id}",
            rate=self._rate(),
            burst=int(settings.KIS_RATE_BURST),
            max_wait=ORDER_PACE_WAIT if order else READ_PACE_WAIT,
        )
        headers = {
            "content-type": "application/json; charset=utf-8",
            "authorization": f"Bearer {token}",
            "appkey": self.config.app_key,
            "appsecret": self.config.app_secret,
            "tr_id": tr_id,
            "custtype": "P",
            "tr_cont": tr_cont,
        }
        unknown: type[BrokerError] = BrokerTimeout if order else BrokerUnavailable
        try:
            response = self.session.request(
                method, self.config.rest_url + path, params=params, json=body, headers=headers, timeout=self.config.timeout
            )
        except requests.RequestException as exc:
            if _before_sending(exc):
                raise BrokerUnavailable(f"KIS unreachable ({type(exc).__name__}); nothing was sent.") from None
            if order:
                raise BrokerTimeout(f"KIS did not answer the order ({type(exc).__name__}); its outcome is unknown.") from None
            raise BrokerUnavailable(f"KIS did not answer ({type(exc).__name__}).") from None
        data = _json(response)
        rt_cd = data.get("rt_cd") if data is not None else None
        code = _code(data) if data is not None else ""
        if code == protocol.ERR_TOKEN_EXPIRED:
            raise _TokenExpired(token)
        if code == protocol.ERR_RATE_LIMIT:
            raise BrokerRateLimited(f"KIS rate limit ({_message(data or {})}).", retry_after=1.0)
        if data is None or not isinstance(rt_cd, str):
            what = "a malformed answer" if response.status_code < 500 else f"HTTP {response.status_code}"
            if order:
                raise BrokerTimeout(f"KIS answered the order with {what}; its outcome is unknown.")
            raise BrokerUnavailable(f"KIS answered with {what}.")
        if rt_cd != protocol.RT_OK:
            if code in protocol.CREDENTIAL_ERRORS:
                raise KisCredentialsRefused(f"KIS refused the app key or secret ({_message(data)}).", raw=_safe(data))
            if code.startswith(protocol.GATEWAY_CODE_PREFIX):
                raise BrokerUnavailable(f"KIS gateway refused the call ({_message(data)}).", raw=_safe(data))
            raise BrokerRejected(f"KIS: {_message(data)}", raw=_safe(data))
        if response.status_code >= 400:
            # rt_cd "0" with an error status: nothing says what happened.
            raise unknown(f"KIS answered HTTP {response.status_code} with rt_cd 0.")
        return KisResponse(body=data, tr_cont=str(response.headers.get("tr_cont", "")).strip())

    def _rate(self) -> float:
        return float(settings.KIS_RATE_LIVE if self.config.environment == Environment.LIVE else settings.KIS_RATE_PAPER)

    def pages(self, path: str, tr_id: str, params: Mapping[str, str], *, max_pages: int | None = None) -> Iterator[KisResponse]:
        """A paged GET: tr_cont F/M in the answer means more; the next call
        sends tr_cont N and echoes CTX_AREA_FK100/NK100 from the body.
        Bounded: more than ``max_pages`` pages is BrokerUnavailable (never a
        silently cut list: a missing holding or order would be misreported)."""
        limit = max_pages or int(settings.KIS_MAX_PAGES)
        query = dict(params)
        query.setdefault("CTX_AREA_FK100", "")
        query.setdefault("CTX_AREA_NK100", "")
        tr_cont = ""
        for _ in range(limit):
            answer = self.request("GET", path, tr_id, params=query, tr_cont=tr_cont)
            yield answer
            if not answer.more:
                return
            query["CTX_AREA_FK100"] = str(answer.body.get("ctx_area_fk100") or "").strip()
            query["CTX_AREA_NK100"] = str(answer.body.get("ctx_area_nk100") or "").strip()
            tr_cont = protocol.NEXT_PAGE
        raise BrokerUnavailable(f"KIS kept paging past {limit} pages; nothing was used.")

    # --- TRs ------------------------------------------------------------------------------------------

    def _account(self) -> dict[str, str]:
        return {"CANO": self.config.cano, "ACNT_PRDT_CD": self.config.product_code}

    def order_cash(self, *, side: str, code: str, qty: int, price: int | None) -> dict[str, Any]:
        """A cash buy or sell; ``price`` None is a market order. Returns ``output``
        (KRX_FWDG_ORD_ORGNO, ODNO, ORD_TMD)."""
        body = {
            **self._account(),
            "PDNO": code,
            "ORD_DVSN": protocol.ORD_DVSN_MARKET if price is None else protocol.ORD_DVSN_LIMIT,
            "ORD_QTY": str(qty),
            "ORD_UNPR": "0" if price is None else str(price),
            "EXCG_ID_DVSN_CD": protocol.EXCHANGE_ID,
        }
        tr_id = self.config.tr.buy if side == "buy" else self.config.tr.sell
        return self._order_output(self.request("POST", protocol.ORDER_CASH_PATH, tr_id, body=body, order=True))

    def order_revise(self, *, org_no: str, odno: str, ord_dvsn: str, qty: int, price: int, all_remaining: bool) -> dict[str, Any]:
        """Reprice (all or ``qty`` of) the remaining quantity of order ``odno``."""
        return self._rvsecncl(
            protocol.RVSE_REVISE, org_no=org_no, odno=odno, ord_dvsn=ord_dvsn, qty=qty, price=price, all_remaining=all_remaining
        )

    def order_cancel(self, *, org_no: str, odno: str, ord_dvsn: str, qty: int, all_remaining: bool) -> dict[str, Any]:
        """Cancel (all or ``qty`` of) the remaining quantity of order ``odno``."""
        return self._rvsecncl(
            protocol.RVSE_CANCEL, org_no=org_no, odno=odno, ord_dvsn=ord_dvsn, qty=qty, price=0, all_remaining=all_remaining
        )

    def _rvsecncl(self, kind: str, *, org_no: str, odno: str, ord_dvsn: str, qty: int, price: int, all_remaining: bool) -> dict[str, Any]:
        body = {
            **self._account(),
            "KRX_FWDG_ORD_ORGNO": org_no,
            "ORGN_ODNO": odno,
            "ORD_DVSN": ord_dvsn,
            "RVSE_CNCL_DVSN_CD": kind,
            "ORD_QTY": str(qty),
            "ORD_UNPR": str(price),
            "QTY_ALL_ORD_YN": "Y" if all_remaining else "N",
            "EXCG_ID_DVSN_CD": protocol.EXCHANGE_ID,
        }
        return self._order_output(self.request("POST", protocol.ORDER_RVSECNCL_PATH, self.config.tr.revise_cancel, body=body, order=True))

    @staticmethod
    def _order_output(answer: KisResponse) -> dict[str, Any]:
        try:
            output = answer.one("output")
        except BrokerUnavailable:
            output = {}
        if not str(output.get("ODNO") or "").strip():
            # rt_cd 0 without an order number: it was taken, we cannot say as what.
            raise BrokerTimeout("KIS accepted the order without an order number; its outcome is unknown.", raw=_safe(answer.body))
        return output

    def balance(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Holdings (output1 of every page) and the KRW summary row (output2)."""
        params = {**self._account(), **protocol.BALANCE_QUERY}
        holdings: list[dict[str, Any]] = []
        summary: dict[str, Any] = {}
        for page in self.pages(protocol.INQUIRE_BALANCE_PATH, self.config.tr.balance, params):
            holdings.extend(page.rows("output1"))
            summary = next(iter(page.rows("output2")), summary)
        if not summary:
            raise BrokerUnavailable("KIS answered the balance without its summary (output2).")
        return holdings, summary

    def daily_ccld(
        self, *, start: str, end: str, code: str = "", odno: str = "", side: str = protocol.SIDE_ALL, ccld: str = protocol.CCLD_ALL
    ) -> list[dict[str, Any]]:
        """The orders (with their cumulative fills) between ``start`` and ``end`` (YYYYMMDD), every page."""
        params = {
            **self._account(),
            "INQR_STRT_DT": start,
            "INQR_END_DT": end,
            "SLL_BUY_DVSN_CD": side,
            "INQR_DVSN": protocol.INQR_NEWEST_FIRST,
            "PDNO": code,
            "CCLD_DVSN": ccld,
            "ORD_GNO_BRNO": "",
            "ODNO": odno,
            "INQR_DVSN_3": "00",
            "INQR_DVSN_1": "",
        }
        rows: list[dict[str, Any]] = []
        for page in self.pages(protocol.INQUIRE_DAILY_CCLD_PATH, self.config.tr.daily_ccld, params):
            rows.extend(page.rows("output1"))
        return rows

    def price(self, code: str) -> dict[str, Any]:
        params = {"FID_COND_MRKT_DIV_CODE": protocol.MARKET_STOCKS, "FID_INPUT_ISCD": code}
        return self.request("GET", protocol.INQUIRE_PRICE_PATH, protocol.PRICE_TR, params=params).one("output")

    def daily_bars(self, code: str, *, start: str, end: str, period: str = "D", adjusted: bool = True) -> list[dict[str, Any]]:
        params = {
            "FID_COND_MRKT_DIV_CODE": protocol.MARKET_STOCKS,
            "FID_INPUT_ISCD": code,
            "FID_INPUT_DATE_1": start,
            "FID_INPUT_DATE_2": end,
            "FID_PERIOD_DIV_CODE": period,
            "FID_ORG_ADJ_PRC": "0" if adjusted else "1",
        }
        return self.request("GET", protocol.DAILY_CHART_PATH, protocol.DAILY_CHART_TR, params=params).rows("output2")

    def minute_bars(self, code: str, *, until: str) -> list[dict[str, Any]]:
        """Today's minute bars up to ``until`` (HHMMSS), 30 a call."""
        params = {
            "FID_ETC_CLS_CODE": "",
            "FID_COND_MRKT_DIV_CODE": protocol.MARKET_STOCKS,
            "FID_INPUT_ISCD": code,
            "FID_INPUT_HOUR_1": until,
            "FID_PW_DATA_INCU_YN": "N",
        }
        return self.request("GET", protocol.MINUTE_CHART_PATH, protocol.MINUTE_CHART_TR, params=params).rows("output2")


def _safe(body: Mapping[str, Any]) -> dict[str, Any]:
    """What of an answer may be kept on an order's event: the codes and message."""
    return {key: body[key] for key in ("rt_cd", "msg_cd", "msg1") if key in body}


def _token_expiry(body: Mapping[str, Any]) -> datetime:
    """``expires_in`` seconds from now (else ``access_token_token_expired``, Korea time; else a day)."""
    try:
        seconds = float(body.get("expires_in") or 0)
    except (TypeError, ValueError):
        seconds = 0.0
    if seconds > 0:
        return datetime.now(UTC) + timedelta(seconds=seconds)
    stamp = body.get("access_token_token_expired")
    if isinstance(stamp, str):
        try:
            return datetime.strptime(stamp, protocol.TOKEN_EXPIRED_FORMAT).replace(tzinfo=ZoneInfo(protocol.TIMEZONE)).astimezone(UTC)
        except ValueError:
            pass
    return datetime.now(UTC) + timedelta(days=1)
