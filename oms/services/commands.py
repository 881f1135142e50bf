"""Commands on the wire (REST ``/oms/commands``, account routes, the WebSocket
``command`` op, the CLI): one envelope, one validation, one idempotency rule.

    {"account_id": 1, "command": "send_order", "request_id": "req-1", "payload": {...}}

A batch is validated whole first (one invalid: none run) and names one account.
Each command answers ``{request_id, command, ok, order_id, client_order_id,
status, error}``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction

from accounts.models import User
from brokers.models import BrokerAccount
from core.exceptions import DomainError, error_body
from oms.errors import Conflict, InvalidInput, NotFound
from oms.models import IdempotencyKey, Order
from oms.services import amend, closing, send
from oms.services import positions as position_services
from oms.services.validation import OrderSpec, order_spec

PAYLOAD_FIELDS: dict[str, frozenset[str]] = {
    "send_order": frozenset(
        {
            "symbol",
            "side",
            "order_type",
            "qty",
            "price",
            "stop_price",
            "time_in_force",
            "strategy_id",
            "position_id",
            "reduce_only",
            "client_order_id",
        }
    ),
    "cancel_order": frozenset({"order_id", "client_order_id"}),
    "change_order": frozenset({"order_id", "client_order_id", "qty", "price", "stop_price"}),
    "close_position": frozenset({"position_id"}),
    "close_by": frozenset({"position_id_a", "position_id_b"}),
    "reassign": frozenset({"deal_ids", "target_strategy_id", "target_position_id"}),
    "cancel_all": frozenset(),
    "flatten_all": frozenset(),
}
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "send_order": ("symbol", "side", "order_type", "qty"),
    "close_position": ("position_id",),
    "close_by": ("position_id_a", "position_id_b"),
    "reassign": ("deal_ids",),
}
MAX_BATCH = 500


@dataclass
class Command:
    command: str
    payload: dict[str, Any]
    request_id: Any = None
    # The payload as the client sent it: what idempotency fingerprints.
    original: dict[str, Any] = field(default_factory=dict)
    # send_order: the payload validated once here, not again when it runs.
    spec: OrderSpec | None = None


@dataclass
class CommandResult:
    request_id: Any
    command: str
    ok: bool = True
    order_id: int | None = None
    client_order_id: str | None = None
    status: str | None = None
    error: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        body = {
            "request_id": self.request_id,
            "command": self.command,
            "ok": self.ok,
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "status": self.status,
            "error": self.error,
        }
        body.update(self.extra)
        return body


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an integer.", fields={name: ["An integer is required."]})
    return value


def command_parse(raw: Any, *, account_id: int | None = None) -> tuple[int, Command]:
    """Check one envelope's shape; returns (account_id, command)."""
    if not isinstance(raw, dict):
        raise InvalidInput("A command is a JSON object.", fields={"command": ["An object is required."]})
    unknown = set(raw) - {"account_id", "command", "request_id", "payload"}
    if unknown:
        raise InvalidInput("Unknown command fields.", fields={k: ["Unknown field."] for k in sorted(unknown)})
    name = raw.get("command")
    if name not in PAYLOAD_FIELDS:
        raise InvalidInput(f"Unknown command {str(name)[:40]!r}.", fields={"command": [f"One of {', '.join(PAYLOAD_FIELDS)}."]})
    if account_id is None:
        account_id = _int(raw.get("account_id"), "account_id")
    elif "account_id" in raw and raw["account_id"] != account_id:
        raise InvalidInput("account_id does not match the route.", fields={"account_id": ["Mismatch."]})
    payload = raw.get("payload") or {}
    if not isinstance(payload, dict):
        raise InvalidInput("payload must be an object.", fields={"payload": ["An object is required."]})
    request_id = raw.get("request_id")
    if request_id is not None and not isinstance(request_id, str | int):
        raise InvalidInput("request_id must be a string.", fields={"request_id": ["A string is required."]})
    return account_id, command_check(Command(command=name, payload=payload, request_id=request_id))


def command_check(command: Command) -> Command:
    command.original = dict(command.payload)
    allowed = PAYLOAD_FIELDS[command.command]
    unknown = set(command.payload) - allowed
    if unknown:
        raise InvalidInput("Unknown payload fields.", fields={f"payload.{k}": ["Unknown field."] for k in sorted(unknown)})
    missing = [f for f in REQUIRED_FIELDS.get(command.command, ()) if command.payload.get(f) in (None, "")]
    if missing:
        raise InvalidInput(f"Missing {', '.join(missing)}.", fields={f"payload.{k}": ["This field is required."] for k in missing})
    p = command.payload
    if command.command in ("cancel_order", "change_order") and p.get("order_id") is None and not p.get("client_order_id"):
        raise InvalidInput("Name the order by order_id or client_order_id.", fields={"payload.order_id": ["Required."]})
    for name in ("order_id", "position_id", "position_id_a", "position_id_b", "target_position_id"):
        if p.get(name) is not None:
            _int(p[name], name)
    if command.command == "reassign":
        ids = p.get("deal_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise InvalidInput("deal_ids must be a non-empty list of integers.", fields={"payload.deal_ids": ["A list of integers."]})
    if command.command == "send_order":
        spec = order_spec(**p)  # raises InvalidInput with the field errors
        # Freeze the generated client order id so a replay sends the same.
        command.payload = {**p, "client_order_id": spec.client_order_id}
        command.spec = spec
    return command


def fingerprint(commands: list[Command], shape: str) -> str:
    body = json.dumps([[c.command, c.original, c.request_id] for c in commands] + [shape], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class Outcome:
    results: list[CommandResult]
    replayed: bool = False
    status_code: int = 202
    body: Any = None


def _order_result(command: Command, order: Order) -> CommandResult:
    return CommandResult(
        request_id=command.request_id,
        command=command.command,
        order_id=order.pk,
        client_order_id=order.client_order_id,
        status=order.status,
    )


def _send(account: BrokerAccount, commands: list[Command], *, actor: User | None, source: str) -> list[Order]:
    specs = [c.spec for c in commands]
    if all(spec is not None for spec in specs):
        return send.orders_send(account=account, specs=specs, actor=actor, source=source)  # type: ignore[arg-type]
    return send.orders_send(account=account, payloads=[c.payload for c in commands], actor=actor, source=source)


def _run_one(account: BrokerAccount, command: Command, *, actor: User | None, source: str) -> CommandResult:
    p = command.payload
    name = command.command
    if name == "send_order":
        return _order_result(command, _send(account, [command], actor=actor, source=source)[0])
    if name == "cancel_order":
        order = amend.order_get_for_account(account=account, order_id=p.get("order_id"), client_order_id=p.get("client_order_id"))
        return _order_result(command, amend.order_cancel(order=order, actor=actor, source=source))
    if name == "change_order":
        order = amend.order_get_for_account(account=account, order_id=p.get("order_id"), client_order_id=p.get("client_order_id"))
        changed = amend.order_change(
            order=order, actor=actor, source=source, qty=p.get("qty"), price=p.get("price"), stop_price=p.get("stop_price")
        )
        return _order_result(command, changed)
    if name == "close_position":
        return _order_result(command, closing.position_close(account=account, position_id=p["position_id"], actor=actor, source=source))
    if name == "close_by":
        deals = position_services.position_close_by(account=account, position_id_a=p["position_id_a"], position_id_b=p["position_id_b"])
        return CommandResult(request_id=command.request_id, command=name, status="done", extra={"deal_ids": [d.pk for d in deals]})
    if name == "reassign":
        deals = position_services.deals_reassign(
            account=account,
            deal_ids=p["deal_ids"],
            target_strategy_id=str(p.get("target_strategy_id") or ""),
            target_position_id=p.get("target_position_id"),
        )
        return CommandResult(request_id=command.request_id, command=name, status="done", extra={"deal_ids": [d.pk for d in deals]})
    if name == "cancel_all":
        orders = amend.orders_cancel_all(account=account, actor=actor, source=source)
        return CommandResult(request_id=command.request_id, command=name, status="done", extra={"order_ids": [o.pk for o in orders]})
    if name == "flatten_all":
        orders = closing.positions_flatten_all(account=account, actor=actor, source=source)
        return CommandResult(request_id=command.request_id, command=name, status="done", extra={"order_ids": [o.pk for o in orders]})
    raise InvalidInput(f"Unknown command {name!r}.")


def _error_result(command: Command, exc: DomainError) -> CommandResult:
    return CommandResult(
        request_id=command.request_id,
        command=command.command,
        ok=False,
        error={**error_body(exc.code, exc.message, exc.fields)["error"], "status": exc.status_code},
    )


def _execute(account: BrokerAccount, commands: list[Command], *, actor: User | None, source: str) -> list[CommandResult]:
    if len(commands) > 1 and all(c.command == "send_order" for c in commands):
        # A batch of orders: one lock, one write, one enqueue — atomic.
        orders = _send(account, commands, actor=actor, source=source)
        return [_order_result(c, o) for c, o in zip(commands, orders, strict=True)]
    if len(commands) == 1:
        return [_run_one(account, commands[0], actor=actor, source=source)]
    results = []
    for command in commands:
        try:
            results.append(_run_one(account, command, actor=actor, source=source))
        except DomainError as exc:
            results.append(_error_result(command, exc))
    return results


def _claim(account: BrokerAccount, key: str, print_: str) -> IdempotencyKey | None:
    """Insert the key under its unique constraint; None when it was claimed before."""
    try:
        with transaction.atomic():
            return IdempotencyKey.objects.create(account=account, key=key, fingerprint=print_)
    except IntegrityError:
        return None


def commands_run(
    *,
    account: BrokerAccount,
    commands: list[Command],
    actor: User | None,
    source: str,
    idempotency_key: str | None = None,
    shape: str = "object",
) -> Outcome:
    """Run validated commands for one account, at most once per idempotency key.

    Replay of a finished key answers the stored body; the same key with
    another body is 422; a key still in flight is 409. A key whose outcome
    is unknown stays claimed: a retry never sends again."""
    if not commands:
        raise InvalidInput("No commands.", fields={"commands": ["At least one."]})
    if len(commands) > MAX_BATCH:
        raise InvalidInput(f"At most {MAX_BATCH} commands per request.", fields={"commands": [f"At most {MAX_BATCH}."]})
    if idempotency_key is None and len(commands) == 1 and commands[0].command == "send_order" and "client_order_id" in commands[0].payload:
        idempotency_key = "coid:" + commands[0].payload["client_order_id"]
    claim = None
    if idempotency_key:
        if len(idempotency_key) > 128:
            raise InvalidInput("Idempotency-Key is at most 128 characters.", fields={"Idempotency-Key": ["Too long."]})
        print_ = fingerprint(commands, shape)
        claim = _claim(account, idempotency_key, print_)
        if claim is None:
            existing = IdempotencyKey.objects.filter(account=account, key=idempotency_key).first()
            if existing is None:
                # The holder's command failed and freed the key between our insert and this read.
                raise Conflict("A request with this idempotency key is still in flight.", code="idempotency_in_flight")
            if existing.fingerprint != print_:
                raise InvalidInput("This idempotency key was used with another request.", code="idempotency_mismatch")
            if existing.response_status is None:
                raise Conflict("A request with this idempotency key is still in flight.", code="idempotency_in_flight")
            return Outcome(results=[], replayed=True, status_code=existing.response_status, body=existing.response_body)
    try:
        results = _execute(account, commands, actor=actor, source=source)
    except DomainError:
        if claim is not None:
            claim.delete()  # nothing ran: the key is free again
        raise
    body = [r.as_dict() for r in results]
    body_out: Any = body[0] if shape == "object" else body
    if claim is not None:
        IdempotencyKey.objects.filter(pk=claim.pk).update(response_status=202, response_body=body_out)
    return Outcome(results=results, status_code=202, body=body_out)


def account_for_user(*, user: User, account_id: int) -> BrokerAccount:
    account = BrokerAccount.objects.filter(pk=account_id, owner=user).first()
    if account is None:
        raise NotFound("No such account.")
    return account


def commands_from_wire(*, user: User, raw: Any, source: str, idempotency_key: str | None = None, actor: User | None = None) -> Outcome:
    """The ``POST /oms/commands`` and WebSocket entry: an object or an array."""
    shape = "array" if isinstance(raw, list) else "object"
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise InvalidInput("An empty array.", fields={"commands": ["At least one."]})
    parsed = []
    errors: dict[str, Any] = {}
    for index, item in enumerate(items):
        try:
            parsed.append(command_parse(item))
        except InvalidInput as exc:
            if shape == "object":
                raise
            errors.update({f"[{index}].{k}": v for k, v in exc.fields.items()} or {f"[{index}]": [exc.message]})
    if errors:
        raise InvalidInput("A command of the batch is not valid; none was run.", fields=errors)
    account_ids = {account_id for account_id, _ in parsed}
    if len(account_ids) != 1:
        raise InvalidInput(
            "All commands of one request name the same account_id.", code="mixed_accounts", fields={"account_id": ["Mixed."]}
        )
    account = account_for_user(user=user, account_id=account_ids.pop())
    return commands_run(
        account=account, commands=[c for _, c in parsed], actor=actor or user, source=source, idempotency_key=idempotency_key, shape=shape
    )
