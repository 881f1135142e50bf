"""Kite postbacks (``POST /api/v1/brokers/kite/postback``): Kite POSTs an
order's JSON on every status change, with ``checksum = sha256_hex(order_id +
order_timestamp + api_secret)``. That checksum is the request's only
authentication: the accounts are those whose ``broker_user_id`` is the
postback's ``user_id`` and whose api secret makes the checksum (compared in
constant time). A postback that names no such account, or whose checksum no
secret makes, is refused (403) and changes nothing. An accepted one is
queued (``brokers.kite_order_update``) and applied by
``brokers.kite.updates.order_update_deliver``, exactly once with the
ticker's update of the same change and with reconciliation; a replay is
accepted again and applies nothing.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from brokers.base import BrokerError
from brokers.kite.client import kite_checksum, kite_config_for
from brokers.models import BrokerAccount, BrokerKind
from core.exceptions import DomainError, Forbidden, InvalidInput

logger = logging.getLogger(__name__)

_ORDER_ID = re.compile(r"^[0-9]{1,40}$")
_CHECKSUM = re.compile(r"^[0-9a-fA-F]{64}$")
_USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_ACCOUNTS = 20  # accounts of one Kite user id a postback is checked against


class PayloadTooLarge(DomainError):
    status_code = 413
    code = "payload_too_large"


@dataclass(frozen=True)
class PostbackAccepted:
    order_id: str
    status: str
    account_ids: tuple[int, ...]


def _parse(body: bytes) -> dict[str, Any]:
    if len(body) > int(settings.KITE_POSTBACK_MAX_BYTES):
        raise PayloadTooLarge(f"A postback is at most {settings.KITE_POSTBACK_MAX_BYTES} bytes.")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise DomainError("The postback is not JSON.", code="parse_error") from None
    if not isinstance(payload, dict):
        raise DomainError("The postback is a JSON object.", code="parse_error")
    problems: dict[str, list[str]] = {}
    checks = {
        "order_id": _ORDER_ID,
        "checksum": _CHECKSUM,
        "user_id": _USER_ID,
    }
    for name, pattern in checks.items():
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and name == "order_id":
            value = str(value)
        if not isinstance(value, str) or not pattern.match(value):
            problems[name] = ["Missing or malformed."]
    stamp = payload.get("order_timestamp")
    if not isinstance(stamp, str) or not 0 < len(stamp) <= 40:
        problems["order_timestamp"] = ["Missing or malformed."]
    if not isinstance(payload.get("status"), str) or len(payload["status"]) > 60:
        problems["status"] = ["Missing or malformed."]
    if problems:
        raise InvalidInput("The postback lacks Kite's order fields.", fields=problems)
    return payload


def _secret(account: BrokerAccount) -> str:
    try:
        return kite_config_for(account).api_secret
    except BrokerError:  # credentials unset or unreadable: it authenticates nothing
        return ""


def kite_postback_receive(*, body: bytes) -> PostbackAccepted:
    """Check a postback and queue its order update for each account it
    authenticates for. Raises ``InvalidInput`` (not a postback),
    ``PayloadTooLarge`` or ``Forbidden`` (no account's secret makes the checksum)."""
    from brokers.tasks import kite_order_update_task

    payload = _parse(body)
    order_id, stamp = str(payload["order_id"]), payload["order_timestamp"]
    given = payload["checksum"].lower()
    candidates = BrokerAccount.objects.filter(kind=BrokerKind.KITE, broker_user_id=payload["user_id"]).order_by("pk")[:MAX_ACCOUNTS]
    matched = []
    for account in candidates:
        secret = _secret(account)
        if not secret:
            continue
        if hmac.compare_digest(kite_checksum(order_id, stamp, secret), given):
            matched.append(account.pk)
    if not matched:
        logger.warning("Kite postback for order %s refused: no account's secret makes its checksum", order_id)
        raise Forbidden("The postback's checksum does not match.", code="invalid_checksum")
    order = {k: v for k, v in payload.items() if k != "checksum"}
    for account_id in matched:
        kite_order_update_task.delay(account_id, order)
    return PostbackAccepted(order_id=order_id, status=str(payload["status"]), account_ids=tuple(matched))
