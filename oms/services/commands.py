"""Commands on the wire (REST ``/oms/commands``, account routes, the WebSocket
``command`` op, the admin, the CLI): one envelope, one spec per payload
(``oms.specs``), one dispatch (``COMMANDS``: name -> spec and handler), one
idempotency rule.

    {"account_id": 1, "command": "send_order", "request_id": "req-1", "payload": {...}}

A batch is validated whole first (one invalid: none run) and names one account.
Each command answers ``{request_id, command, ok, order_id, client_order_id,
status, error}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
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
from oms.specs import (
    MAX_BATCH,
    PAYLOAD_SPECS,
    ChangeSpec,
    CloseBySpec,
    ClosePositionSpec,
    CommandEnvelope,
    CommandSpec,
    NoPayload,
    OrderRef,
    OrderSpec,
    PayloadSpec,
    ReassignSpec,
    spec_context,
    spec_parse,
)

logger = logging.getLogger(__name__)


@dataclass
class Command:
    """A command whose payload its spec has parsed (``spec``: ``OrderSpec``,
    ``ChangeSpec``...). Build one with ``command_for`` or from the wire."""

    command: str
    spec: Any
    request_id: Any = None
    # The payload as the client sent it: what idempotency fingerprints.
    original: dict[str, Any] = field(default_factory=dict)


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


# --- the handler table ------------------------------------------------------------------------------

# A handler runs one parsed command: an Order answers with the order's
# fields, a dict with ``status: done`` and the dict's keys (deal_ids...).
Run = Callable[[BrokerAccount, Any, "User | None", str], "Order | dict[str, Any]"]


@dataclass(frozen=True)
class CommandHandler:
    spec: type[PayloadSpec]
    run: Run


def _send_order(account: BrokerAccount, spec: OrderSpec, actor: User | None, source: str) -> Order:
    return send.orders_send(account=account, specs=[spec], actor=actor, source=source)[0]


def _order_of(account: BrokerAccount, ref: OrderRef) -> Order:
    return amend.order_get_for_account(account=account, order_id=ref.order_id, client_order_id=ref.client_order_id)


def _cancel_order(account: BrokerAccount, spec: OrderRef, actor: User | None, source: str) -> Order:
    return amend.order_cancel(order=_order_of(account, spec), actor=actor, source=source)


def _change_order(account: BrokerAccount, spec: ChangeSpec, actor: User | None, source: str) -> Order:
    return amend.order_change(order=_order_of(account, spec), spec=spec, actor=actor, source=source)


def _close_position(account: BrokerAccount, spec: ClosePositionSpec, actor: User | None, source: str) -> Order:
    return closing.position_close(account=account, position_id=spec.position_id, actor=actor, source=source)


def _close_by(account: BrokerAccount, spec: CloseBySpec, actor: User | None, source: str) -> dict[str, Any]:
    deals = position_services.position_close_by(account=account, position_id_a=spec.position_id_a, position_id_b=spec.position_id_b)
    return {"deal_ids": [d.pk for d in deals]}


def _reassign(account: BrokerAccount, spec: ReassignSpec, actor: User | None, source: str) -> dict[str, Any]:
    deals = position_services.deals_reassign(
        account=account,
        deal_ids=list(spec.deal_ids),
        target_strategy_id=spec.target_strategy_id,
        target_position_id=spec.target_position_id,
    )
    return {"deal_ids": [d.pk for d in deals]}


def _cancel_all(account: BrokerAccount, spec: NoPayload, actor: User | None, source: str) -> dict[str, Any]:
    return {"order_ids": [o.pk for o in amend.orders_cancel_all(account=account, actor=actor, source=source)]}


def _flatten_all(account: BrokerAccount, spec: NoPayload, actor: User | None, source: str) -> dict[str, Any]:
    return {"order_ids": [o.pk for o in closing.positions_flatten_all(account=account, actor=actor, source=source)]}


_RUN: dict[str, Run] = {
    "send_order": _send_order,
    "cancel_order": _cancel_order,
    "change_order": _change_order,
    "close_position": _close_position,
    "close_by": _close_by,
    "reassign": _reassign,
    "cancel_all": _cancel_all,
    "flatten_all": _flatten_all,
}
#: Command name -> its payload spec and its handler: the one dispatch.
COMMANDS: dict[str, CommandHandler] = {name: CommandHandler(spec=spec, run=_RUN[name]) for name, spec in PAYLOAD_SPECS.items()}


# --- parsing -------------------------------------------------------------------------------------------


def command_for(
    *, account: BrokerAccount | None, command: str, payload: Any, request_id: Any = None, context: dict[str, Any] | None = None
) -> Command:
    """Parse one payload with its command's spec against the account (its
    broker's capabilities); InvalidInput (422) names the fields as sent."""
    handler = COMMANDS.get(command)
    if handler is None:
        raise InvalidInput(f"Unknown command {str(command)[:40]!r}.", fields={"command": [f"One of {', '.join(COMMANDS)}."]})
    spec = spec_parse(handler.spec, {} if payload is None else payload, context={**spec_context(account), **(context or {})})
    return Command(command=command, spec=spec, request_id=request_id, original=payload if isinstance(payload, dict) else {})


def commands_parse(raw: Any, *, user: User) -> tuple[BrokerAccount, list[Command], str]:
    """The wire form (an object, or an array of one account's commands):
    the envelopes first, then the account, then each payload against that
    account. Returns (account, commands, shape)."""
    shape = "array" if isinstance(raw, list) else "object"
    many = shape == "array"
    message = "A command of the batch is not valid; none was run." if many else None
    envelopes: list[CommandEnvelope] = _envelopes(raw, many=many, message=message, context={})
    account_ids = {e.account_id for e in envelopes}
    if len(account_ids) != 1:
        raise InvalidInput(
            "All commands of one request name the same account_id.", code="mixed_accounts", fields={"account_id": ["Mixed."]}
        )
    account = account_for_user(user=user, account_id=account_ids.pop())
    envelopes = _envelopes(raw, many=many, message=message, context={**spec_context(account), "parse_payload": True})
    return account, [Command(e.command, e.spec, e.request_id, original=e.payload) for e in envelopes], shape


def _envelopes(raw: Any, *, many: bool, message: str | None, context: dict[str, Any]) -> list[CommandEnvelope]:
    parsed = spec_parse(CommandSpec, raw, context=context, many=many, message=message)
    return list(parsed) if many else [parsed]


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


def _run_one(account: BrokerAccount, command: Command, *, actor: User | None, source: str) -> CommandResult:
    answer = COMMANDS[command.command].run(account, command.spec, actor, source)
    if isinstance(answer, Order):
        return _order_result(command, answer)
    return CommandResult(request_id=command.request_id, command=command.command, status="done", extra=answer)


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
        orders = send.orders_send(account=account, specs=[c.spec for c in commands], actor=actor, source=source)
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


def _state_marks(account: BrokerAccount) -> tuple[int, int, int]:
    # Every committed change of an account's orders, positions or funds moves
    # one of its stream sequences (taken in the changing transaction).
    marks = BrokerAccount.objects.filter(pk=account.pk).values_list("orders_seq", "positions_seq", "funds_seq").first()
    return marks or (0, 0, 0)


def _settle_failed_claim(claim: IdempotencyKey, account: BrokerAccount, marks: tuple[int, int, int] | None) -> None:
    """An unexpected failure (a 500): free the key when nothing of the account
    changed meanwhile (the retry runs afresh), else store the failure, which a
    retry replays instead of possibly sending twice."""
    try:
        if marks is not None and _state_marks(account) == marks:
            claim.delete()
            return
        body = error_body(
            "internal_error", "The request failed and may have been partly applied; check your orders before retrying with a new key."
        )
        IdempotencyKey.objects.filter(pk=claim.pk).update(response_status=500, response_body=body)
    except Exception:  # the database itself is failing: the key stays claimed (409), never sent twice
        logger.exception("could not settle idempotency key %s", claim.pk)


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
    first = commands[0].spec
    if idempotency_key is None and len(commands) == 1 and isinstance(first, OrderSpec) and first.client_named_id:
        idempotency_key = "coid:" + first.client_order_id
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
    marks = _state_marks(account) if claim is not None else None
    try:
        results = _execute(account, commands, actor=actor, source=source)
    except DomainError:
        if claim is not None:
            claim.delete()  # nothing ran: the key is free again
        raise
    except Exception:
        if claim is not None:
            _settle_failed_claim(claim, account, marks)  # a key is never stuck in flight
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
    account, commands, shape = commands_parse(raw, user=user)
    return commands_run(
        account=account, commands=commands, actor=actor or user, source=source, idempotency_key=idempotency_key, shape=shape
    )
