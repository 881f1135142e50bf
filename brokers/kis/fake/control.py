"""The control API under /_fake/ (JSON), so another process (the demo, a
multi-process test) drives the fake the way FakeKisServer's methods do:

    POST /_fake/add_account  {app_key, app_secret, cano, product_code?, hts_id?, cash_krw?, environment?}
    POST /_fake/set_price    {code, price, name?} or {code, prices: [...]} (one frame, several trades)
    POST /_fake/fill         {odno, qty?, price?}  fill (part of) an open order now
    POST /_fake/reject       {odno}                the exchange refuses what remains
    POST /_fake/add_holding  {cano, code, qty, avg_price, name?, product_code?}
    POST /_fake/fault        {kind, count?, path?, seconds?}
    POST /_fake/configure    {token_ttl?, token_interval?, reuse_token?, partial_fill_qty?,
                              balance_page_size?, daily_ccld_page_size?, ping_interval?,
                              rate_per_second?, ws_one_session_per_key?}
    POST /_fake/expire_tokens
    POST /_fake/reset        {} everything, or {"calls": true} / {"faults": true} for one part
    GET  /_fake/calls        {"calls": {path: n}, "pongs": n, "pings": n}
    GET  /_fake/orders       {"orders": [...]}
    GET  /_fake/faults       {"faults": [...]}
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brokers.kis.fake.server import FakeKisServer


def control(fake: FakeKisServer, method: str, path: str, raw: bytes, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    name = path.removeprefix("/_fake/").strip("/")
    try:
        if method == "GET":
            if name == "calls":
                return 200, {"calls": dict(fake.calls), "pings": fake.pings_sent, "pongs": fake.pongs_received}
            if name == "orders":
                return 200, {"orders": fake.exchange.orders_snapshot()}
            if name == "faults":
                return 200, {"faults": fake.faults.pending()}
            return 404, {"error": f"unknown control {name!r}"}
        body = json.loads(raw or b"{}")
        if not isinstance(body, dict):
            raise ValueError("a JSON object")
        if name == "add_account":
            fake.add_account(
                str(body["app_key"]),
                str(body["app_secret"]),
                str(body["cano"]),
                product_code=str(body.get("product_code", "01")),
                hts_id=str(body.get("hts_id", "")),
                cash_krw=Decimal(str(body.get("cash_krw", "10000000"))),
                environment=str(body.get("environment", "paper")),
            )
        elif name == "set_price":
            if "prices" in body:
                fake.set_prices(str(body["code"]), [Decimal(str(p)) for p in body["prices"]])
            else:
                fake.set_price(str(body["code"]), Decimal(str(body["price"])), name=str(body.get("name", "")))
        elif name == "fill":
            price = body.get("price")
            fake.fill(str(body["odno"]), int(body.get("qty", 0)), None if price is None else Decimal(str(price)))
        elif name == "reject":
            fake.reject(str(body["odno"]))
        elif name == "add_holding":
            fake.add_holding(
                str(body["cano"]),
                str(body["code"]),
                int(body["qty"]),
                Decimal(str(body["avg_price"])),
                str(body.get("name", "")),
                product_code=str(body.get("product_code", "01")),
            )
        elif name == "fault":
            params = {k: v for k, v in body.items() if k not in ("kind", "count")}
            fake.fault(str(body["kind"]), int(body.get("count", 1)), **params)
        elif name == "configure":
            fake.configure(**body)
        elif name == "expire_tokens":
            fake.exchange.expire_tokens()
        elif name == "reset":
            fake.reset(calls=bool(body.get("calls", not body)), faults=bool(body.get("faults", not body)), state=not body)
        else:
            return 404, {"error": f"unknown control {name!r}"}
    except (KeyError, ValueError, TypeError, InvalidOperation) as exc:
        return 400, {"error": f"{type(exc).__name__}: {exc}"}
    return 200, {"ok": True}
