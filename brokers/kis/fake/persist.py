"""The fake's state in a JSON file, so the demo's fake KIS keeps its accounts,
holdings, orders and tokens across restarts (as KIS does) and agrees with what
the terminal has booked. A new trading day on load: yesterday's close becomes
the previous close, and day orders left open expire."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from brokers.kis.fake.exchange import Account, App, Exchange, Holding, Order, Quote
from brokers.kis.fake.records import now_kst

VERSION = 1
MAX_STATE_BYTES = 64 * 1024 * 1024


def _plain(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        if f.name in skip:
            continue
        value = getattr(obj, f.name)
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        out[f.name] = value
    return out


def _decimals(data: dict[str, Any], *names: str) -> dict[str, Any]:
    return {**data, **{n: Decimal(str(data[n])) for n in names if n in data}}


def state_dump(exchange: Exchange) -> dict[str, Any]:
    with exchange.lock:
        return {
            "version": VERSION,
            "date": now_kst().strftime("%Y%m%d"),
            "order_seq": exchange._order_seq,  # noqa: SLF001 - the same package's state
            "apps": [
                {**_plain(app, ("last_issue", "tokens")), "tokens": {t: e.isoformat() for t, e in app.tokens.items()}}
                for app in exchange.apps.values()
            ],
            "accounts": [
                {**_plain(a, ("holdings",)), "holdings": [_plain(h) for h in a.holdings.values()]} for a in exchange.accounts.values()
            ],
            "quotes": [_plain(q, ("minutes",)) for q in exchange.quotes.values()],
            "orders": [_plain(o) for o in exchange.orders.values()],
        }


def state_load(exchange: Exchange, data: dict[str, Any]) -> None:
    """Replace ``exchange``'s state with ``data`` (from state_dump). Raises
    ValueError on a file of another version or shape."""
    if data.get("version") != VERSION:
        raise ValueError("not a fake KIS state file of this version")
    today = now_kst().strftime("%Y%m%d")
    new_day = data.get("date") != today
    try:
        apps = {}
        for raw in data["apps"]:
            app = App(**{k: v for k, v in raw.items() if k not in ("tokens", "token_expires_at")})
            app.token_expires_at = datetime.fromisoformat(raw["token_expires_at"]) if raw.get("token_expires_at") else None
            app.tokens = {t: datetime.fromisoformat(e) for t, e in raw["tokens"].items()}
            apps[app.app_key] = app
        accounts = {}
        for raw in data["accounts"]:
            account = Account(**_decimals({k: v for k, v in raw.items() if k != "holdings"}, "cash"))
            account.holdings = {h["code"]: Holding(**_decimals(h, "avg_price")) for h in raw["holdings"]}
            accounts[(account.cano, account.product_code)] = account
        quotes = {}
        for raw in data["quotes"]:
            quote = Quote(**_decimals(raw, "price", "open", "high", "low", "prev_close", "amount"))
            if new_day:
                quote.prev_close = quote.open = quote.high = quote.low = quote.price
                quote.volume, quote.amount, quote.last_qty = 0, Decimal(0), 0
            quotes[quote.code] = quote
        orders = {raw["odno"]: Order(**_decimals(raw, "price", "filled_amount", "reserved_cash")) for raw in data["orders"]}
        seq = int(data["order_seq"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable fake KIS state: {exc}") from None
    with exchange.lock:
        exchange.apps, exchange.accounts, exchange.quotes, exchange.orders = apps, accounts, quotes, orders
        exchange.approval_keys = {key: app.app_key for app in apps.values() for key in app.approval_keys}
        exchange._order_seq = max(exchange._order_seq, seq)  # noqa: SLF001
        for order in orders.values():
            if order.ord_dt < today and order.remaining > 0:  # day orders expire at the close
                owner = accounts.get((order.cano, order.product_code))
                if owner is not None:
                    Exchange._release(order, owner, order.remaining)  # noqa: SLF001
                order.canceled_qty += order.remaining


def state_save(exchange: Exchange, path: Path) -> None:
    """Write the state atomically (a reader never sees half a file)."""
    data = json.dumps(state_dump(exchange), ensure_ascii=False).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def state_read(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is none."""
    if not path.exists():
        return None
    if path.stat().st_size > MAX_STATE_BYTES:
        raise ValueError(f"{path} is too large to be a fake KIS state")
    data = json.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a fake KIS state")
    return data
