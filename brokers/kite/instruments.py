"""Kite's instrument master (``GET /instruments``, CSV) into instruments.

Each row becomes ``EXCHANGE:tradingsymbol`` (a space written ``_``) of venue
``exchange``, with its tick size, lot size, expiry, strike, option type,
``segment`` and ``broker_codes["kite"] = instrument_token`` (how the ticker
maps its packets back). Futures and options are linked to their underlying:
the CSV's ``name`` is the underlying's tradingsymbol on the cash market
(``INFY`` -> ``NSE:INFY``), or one of Kite's index names (``NIFTY`` -> the
NIFTY 50 index ``NSE:NIFTY_50``). Written in bulk (``instruments_bulk_import``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from brokers.kite import protocol
from marketdata.instruments import BulkImport, VenueItem, instruments_bulk_import

COLUMNS = (
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "last_price",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
)
# Kite's names of index underlyings (the F&O ``name``) -> the index's symbol.
INDEX_UNDERLYINGS = {
    "NIFTY": "NSE:NIFTY_50",
    "BANKNIFTY": "NSE:NIFTY_BANK",
    "FINNIFTY": "NSE:NIFTY_FIN_SERVICE",
    "MIDCPNIFTY": "NSE:NIFTY_MID_SELECT",
    "NIFTYNXT50": "NSE:NIFTY_NEXT_50",
    "SENSEX": "BSE:SENSEX",
    "BANKEX": "BSE:BANKEX",
    "SENSEX50": "BSE:SENSEX50",
}
# Where a derivative's underlying trades (its cash market).
CASH_MARKET = {"NFO": "NSE", "BFO": "BSE"}
OPTION_TYPES = {"CE": "call", "PE": "put"}


def rows_from_csv(text: str) -> Iterator[dict[str, str]]:
    """The rows of Kite's instruments CSV; ValueError when the header is not Kite's."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"Not Kite's instruments CSV: missing columns {', '.join(missing)}.")
    yield from reader


def _dec(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _expiry(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def item_of(row: Mapping[str, Any]) -> VenueItem | str:
    """The instrument of one CSV row (as text or as kiteconnect parsed it), or why not."""
    exchange = str(row.get("exchange") or "").strip().upper()
    tradingsymbol = str(row.get("tradingsymbol") or "").strip()
    token = str(row.get("instrument_token") or "").strip()
    if not exchange or not tradingsymbol or not token.isdigit() or not 0 < int(token) < 2**32:
        return f"{exchange}:{tradingsymbol}: no exchange, tradingsymbol or instrument_token"
    kind = str(row.get("instrument_type") or "").strip().upper()
    segment = str(row.get("segment") or "").strip()[:16]
    name = str(row.get("name") or "").strip()
    tick = _dec(row.get("tick_size"))
    lot = _dec(row.get("lot_size"))
    strike = _dec(row.get("strike"))
    fields: dict[str, Any] = {
        "segment": segment,
        "currency": "INR",
        "broker_codes": {"kite": int(token)},
        "expiry": _expiry(row.get("expiry")),
        "strike": strike if strike and strike > 0 else None,
        "option_type": OPTION_TYPES.get(kind, ""),
        "lot_size": lot if lot and lot > 0 else Decimal(1),
    }
    if tick and tick > 0:
        fields["tick_size"] = tick
    if segment == "INDICES":
        fields["type"] = "index"
    elif kind == "FUT":
        fields["type"] = "future"
    elif kind in OPTION_TYPES:
        fields["type"] = "option"
    else:
        fields["type"] = "stock"
    underlying = ""
    if fields["type"] in ("future", "option") and name:
        cash = CASH_MARKET.get(exchange)
        underlying = INDEX_UNDERLYINGS.get(name.upper(), "") or (f"{cash}:{protocol.kite_code(name)}" if cash else "")
    description = name or tradingsymbol
    if fields["type"] in ("future", "option"):
        description = tradingsymbol
    return VenueItem(exchange, protocol.kite_code(tradingsymbol), description[:200], fields, underlying)


def kite_instruments_import(rows: Iterable[Mapping[str, Any]], *, progress: Callable[[int], object] | None = None) -> BulkImport:
    """Import Kite's instrument master rows (``rows_from_csv``, or kiteconnect's
    ``instruments()``); underlyings are linked once every row is written."""
    items: list[VenueItem] = []
    refused: list[str] = []
    for row in rows:
        item = item_of(row)
        if isinstance(item, str):
            refused.append(item)
        else:
            items.append(item)
    result = instruments_bulk_import(items, progress=progress)
    for problem in refused:
        result.skip(problem)
    return result


def kite_instruments_fetch_import(account: Any, *, progress: Callable[[int], object] | None = None) -> BulkImport:
    """Fetch the master with ``account``'s session and import it (BrokerError when Kite does not answer)."""
    from brokers.kite.adapter import KiteBroker

    return kite_instruments_import(KiteBroker(account).instruments(), progress=progress)


def kite_instruments_import_all() -> dict[str, Any]:
    """The daily import: the master once, with the first logged-in Kite
    account that answers (every account sees the same master)."""
    from brokers.base import BrokerError
    from brokers.kite.hooks import kite_login_required
    from brokers.models import AccountStatus, BrokerAccount, BrokerKind

    tried: dict[str, str] = {}
    for account in BrokerAccount.objects.filter(kind=BrokerKind.KITE, status=AccountStatus.ACTIVE).order_by("id"):
        if account.missing_credentials or kite_login_required(account):
            continue
        try:
            return {"account_id": account.pk, **kite_instruments_fetch_import(account).as_dict()}
        except BrokerError as exc:
            tried[str(account.pk)] = f"{type(exc).__name__}: {exc.message}"[:300]
    return {"account_id": None, "skipped_accounts": tried, "message": "No logged-in Kite account answered."}
