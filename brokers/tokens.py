"""Broker tokens (KIS access token and approval key, Kite access token):
issued once per credential across every process, stored encrypted with their
expiry in ``BrokerToken``.

* A caller that finds a valid token gets it from one read: no lock, no wait,
  no write (200 callers at once must not queue, and SQLite has one writer).
* Otherwise one caller at a time, under ``named_lock``, re-reads (someone may
  just have issued it) and issues. The attempt is committed before the broker
  is called, because brokers count attempts: KIS refuses a second access
  token within a minute per app key (``EGW00133``). Inside that interval the
  caller gets ``TokenIssueTooSoon`` (503 with Retry-After), never a wait.
* No database transaction is held across the broker call or the lock wait.
  Callers must not call these inside ``transaction.atomic()``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from brokers.base import BrokerRateLimited, BrokerUnavailable
from brokers.crypto import CredentialError, decrypt_value, encrypt_value
from brokers.locks import LockNotAcquired, named_lock
from brokers.models import BrokerToken
from core.masking import MASK, mask_text

logger = logging.getLogger(__name__)


USABLE_SLACK = timedelta(seconds=30)  # a token this close to expiry is not handed out
LAST_ERROR_MAX = 500
LOCK_WAIT_STEP = 0.05  # seconds: how often a waiter re-reads while another caller issues


def _lock_ttl() -> float:
    """Seconds a token lock outlives a holder that died: longer than an issue
    call can take (connect and read, each up to BROKER_HTTP_TIMEOUT), short
    enough that a crash mid-issue stalls the token for half a minute at most."""
    return max(30.0, 3 * float(settings.BROKER_HTTP_TIMEOUT))


@dataclass(frozen=True)
class TokenKey:
    """Which token: ``credential`` is the raw app key (hashed before it is stored
    or used in a lock name; never shown in a repr)."""

    kind: str
    environment: str
    credential: str = field(repr=False)
    name: str

    @property
    def credential_id(self) -> str:
        return credential_id(self.credential)

    @property
    def lock_name(self) -> str:
        return f"broker-token:{self.kind}:{self.environment}:{self.credential_id}:{self.name}"


@dataclass(frozen=True)
class IssuedToken:
    value: str = field(repr=False)
    expires_at: datetime

    def __post_init__(self) -> None:
        if timezone.is_naive(self.expires_at):
            raise ValueError("IssuedToken.expires_at must be timezone-aware.")


@dataclass(frozen=True)
class TokenState:
    """What may be shown about a token (status pages, the admin): never its value."""

    present: bool
    valid: bool
    issued_at: datetime | None
    expires_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str


class TokenIssueTooSoon(BrokerRateLimited):
    """The broker allows one issue per ``min_interval``; ``retry_after`` seconds are left."""


class TokenRequestNotSent(BrokerUnavailable):
    """An ``issue`` function's failure that surely never reached the broker
    (connection refused, name not resolved): the attempt is not counted
    against the broker's issue-rate rule, so the next caller may try at once."""


def credential_id(credential: str) -> str:
    """A one-way digest of an app key: the key itself is never stored with its token."""
    return hashlib.sha256(credential.encode()).hexdigest()


# --- reads ---------------------------------------------------------------------------

# Decrypted values by ciphertext: each issue encrypts afresh, so an entry can
# never be stale; bounded, since credentials come and go.
_plain_memo: OrderedDict[str, str] = OrderedDict()
_plain_memo_lock = threading.Lock()
_PLAIN_MEMO_SIZE = 256


def _decrypt(stored: str) -> str:
    with _plain_memo_lock:
        value = _plain_memo.get(stored)
        if value is not None:
            _plain_memo.move_to_end(stored)
            return value
    value = decrypt_value(stored)
    with _plain_memo_lock:
        _plain_memo[stored] = value
        while len(_plain_memo) > _PLAIN_MEMO_SIZE:
            _plain_memo.popitem(last=False)
    return value


def _rows(key: TokenKey):  # type: ignore[no-untyped-def]
    return BrokerToken.objects.filter(kind=key.kind, environment=key.environment, credential_id=key.credential_id, name=key.name)


def _read(key: TokenKey) -> BrokerToken | None:
    return _rows(key).first()


_TokenIdent = tuple[str, str, str, str]
# A snapshot of token rows read by one query (``token_reads_preloaded``): None outside one.
_snapshot: ContextVar[dict[_TokenIdent, BrokerToken | None] | None] = ContextVar("broker_token_snapshot", default=None)


def _ident(key: TokenKey) -> _TokenIdent:
    return (key.kind, key.environment, key.credential_id, key.name)


def _read_shown(key: TokenKey) -> BrokerToken | None:
    """The row for a read that only reports (``token_state``, ``token_peek``):
    from the snapshot when one holds the key, else from the database."""
    snapshot = _snapshot.get()
    if snapshot is not None and (ident := _ident(key)) in snapshot:
        return snapshot[ident]
    return _read(key)


@contextlib.contextmanager
def token_reads_preloaded(keys: Iterable[TokenKey]) -> Iterator[None]:
    """Within the block, ``token_state`` and ``token_peek`` of ``keys`` read
    one snapshot taken by one query, not one query each: for pages listing
    many accounts. Issuing, refreshing and invalidating always read the
    database."""
    wanted = {_ident(key) for key in keys}
    rows: dict[_TokenIdent, BrokerToken] = {}
    if wanted:
        found = BrokerToken.objects.filter(credential_id__in={ident[2] for ident in wanted}).order_by("pk")
        for row in found:
            rows.setdefault((row.kind, row.environment, row.credential_id, row.name), row)
    reset = _snapshot.set({ident: rows.get(ident) for ident in wanted})
    try:
        yield
    finally:
        _snapshot.reset(reset)


def _default_margin() -> timedelta:
    return timedelta(minutes=settings.BROKER_TOKEN_REFRESH_MARGIN)


def _value(row: BrokerToken | None, now: datetime, margin: timedelta) -> str | None:
    """The stored token if it stays valid for more than ``margin``, else None.
    A value no configured key decrypts (keys rotated away) counts as absent:
    a new one is issued rather than the request failing."""
    if not (row and row.value_encrypted and row.expires_at and row.expires_at - margin > now):
        return None
    try:
        return _decrypt(row.value_encrypted)
    except CredentialError:
        logger.warning("%s/%s %s stored under a key no longer configured: issuing anew", row.kind, row.environment, row.name)
        return None


def _too_soon_left(row: BrokerToken | None, now: datetime, min_interval: float) -> float:
    """Seconds until the broker allows the next issue attempt (0: allowed now)."""
    if row is None or row.last_attempt_at is None:
        return 0.0
    return max(0.0, min_interval - (now - row.last_attempt_at).total_seconds())


def _too_soon(left: float, min_interval: float) -> TokenIssueTooSoon:
    return TokenIssueTooSoon(
        f"The broker allows one token issue per {min_interval:g} s; retry in {math.ceil(left)} s.",
        retry_after=float(max(1, math.ceil(left))),
    )


# --- the services ----------------------------------------------------------------------


def token_get(
    key: TokenKey,
    issue: Callable[[], IssuedToken],
    *,
    margin: timedelta | None = None,
    min_interval: float = 60.0,
) -> str:
    """A token valid for more than ``margin`` (default ``BROKER_TOKEN_REFRESH_MARGIN``
    minutes), issuing one through ``issue`` when there is none.

    Raises ``TokenIssueTooSoon`` when an issue is due but the broker's interval
    has not passed and no usable token is left, ``LockNotAcquired`` when another
    issuer held the lock past ``BROKER_TOKEN_LOCK_WAIT``, and whatever ``issue``
    raises (recorded, masked, as the token's ``last_error``)."""
    margin = _default_margin() if margin is None else margin
    now = timezone.now()
    row = _read(key)
    value = _value(row, now, margin)
    if value is not None:
        return value
    value = _value(row, now, USABLE_SLACK)
    if value is not None and _too_soon_left(row, now, min_interval) > 0:
        # A refresh is due but the broker would refuse it (or one is under
        # way): the current token still works, so use it without waiting.
        return value

    return _in_process_once(key, lambda: _get_slow(key, issue, margin, min_interval))


def _get_slow(key: TokenKey, issue: Callable[[], IssuedToken], margin: timedelta, min_interval: float) -> str:
    # Wait for the lock in short steps, re-reading between them: when the
    # holder has issued the token, every waiter takes it at once instead of
    # passing the lock along one by one.
    wait = settings.BROKER_TOKEN_LOCK_WAIT
    deadline = time.monotonic() + wait
    while True:
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(
                    named_lock(key.lock_name, ttl=_lock_ttl(), wait=min(LOCK_WAIT_STEP, max(0.0, deadline - time.monotonic())))
                )
            except LockNotAcquired:
                value = _value(_read(key), timezone.now(), margin)
                if value is not None:
                    return value
                if time.monotonic() >= deadline:
                    raise LockNotAcquired(f"Another caller is issuing this token; waited {wait:g} s.") from None
                continue
            return _get_locked(key, issue, margin, min_interval)


class _Flight:
    """One in-process caller's slow path, awaited by the others of this process."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value = ""
        self.error: BaseException | None = None


_flights: dict[tuple[str, str, str, str], _Flight] = {}
_flights_lock = threading.Lock()


def _in_process_once(key: TokenKey, slow: Callable[[], str]) -> str:
    """Threads of one process needing the same token share one slow path: only
    one of them contends for the cross-process lock and reads the database."""
    ident = (key.kind, key.environment, key.credential_id, key.name)
    with _flights_lock:
        flight = _flights.get(ident)
        leader = flight is None
        if flight is None:
            flight = _flights[ident] = _Flight()
    if not leader:
        if not flight.done.wait(timeout=settings.BROKER_TOKEN_LOCK_WAIT + _lock_ttl()):
            raise LockNotAcquired("Another caller is issuing this token.")
        if flight.error is not None:
            raise flight.error
        return flight.value
    try:
        flight.value = slow()
        return flight.value
    except BaseException as exc:
        flight.error = exc
        raise
    finally:
        with _flights_lock:
            _flights.pop(ident, None)
        flight.done.set()


def _get_locked(key: TokenKey, issue: Callable[[], IssuedToken], margin: timedelta, min_interval: float) -> str:
    now = timezone.now()
    row = _read(key)
    value = _value(row, now, margin)
    if value is not None:
        return value
    usable = _value(row, now, USABLE_SLACK)
    left = _too_soon_left(row, now, min_interval)
    if left > 0:
        if usable is not None:
            return usable
        raise _too_soon(left, min_interval)
    try:
        return _issue_locked(key, issue).value
    except Exception:
        if usable is not None:
            # The refresh ahead of expiry failed (recorded); the old token still works.
            return usable
        raise


def token_refresh(key: TokenKey, issue: Callable[[], IssuedToken], *, min_interval: float = 60.0) -> IssuedToken:
    """Issue a new token now (staff's "refresh token now", an expired-token
    answer); ``TokenIssueTooSoon`` inside ``min_interval`` of the last attempt."""
    with named_lock(key.lock_name, ttl=_lock_ttl(), wait=settings.BROKER_TOKEN_LOCK_WAIT):
        left = _too_soon_left(_read(key), timezone.now(), min_interval)
        if left > 0:
            raise _too_soon(left, min_interval)
        return _issue_locked(key, issue)


def token_peek(key: TokenKey) -> str | None:
    """The stored token while it stays valid (``USABLE_SLACK`` ahead of its
    expiry), else None; never issues. For tokens only a person can obtain
    (Kite's access token comes from a login in the browser)."""
    return _value(_read_shown(key), timezone.now(), USABLE_SLACK)


def token_invalidate(key: TokenKey, value: str) -> None:
    """Forget ``value`` after the broker said it expired, unless it was replaced
    meanwhile (a caller with an old token must not drop the new one)."""
    row = _read(key)
    if row is None or not row.value_encrypted:
        return
    try:
        current = _decrypt(row.value_encrypted)
    except CredentialError:  # undecryptable (keys rotated away): useless either way
        current = value
    if current != value:
        return
    # Compare-and-clear on the ciphertext read: a concurrent issue wins.
    _rows(key).filter(pk=row.pk, value_encrypted=row.value_encrypted).update(value_encrypted="", expires_at=None, updated_at=timezone.now())


def token_state(key: TokenKey) -> TokenState:
    row = _read_shown(key)
    if row is None:
        return TokenState(False, False, None, None, None, "")
    present = bool(row.value_encrypted and row.expires_at)
    return TokenState(
        present=present,
        valid=present and row.expires_at is not None and row.expires_at > timezone.now(),
        issued_at=row.issued_at,
        expires_at=row.expires_at if present else None,
        last_attempt_at=row.last_attempt_at,
        last_error=row.last_error,
    )


# --- the issue, under the lock -------------------------------------------------------------


def _issue_locked(key: TokenKey, issue: Callable[[], IssuedToken]) -> IssuedToken:
    # Committed before the broker is called: the broker counts the attempt
    # even if we crash before storing its answer.
    with transaction.atomic():
        attempt_at = timezone.now()
        previous = _rows(key).values_list("last_attempt_at", flat=True).first()
        BrokerToken.objects.update_or_create(
            kind=key.kind,
            environment=key.environment,
            credential_id=key.credential_id,
            name=key.name,
            defaults={"last_attempt_at": attempt_at},
        )
    try:
        issued = issue()
    except TokenRequestNotSent as exc:
        # The broker never saw it: the attempt does not count (only ours is undone).
        _rows(key).filter(last_attempt_at=attempt_at).update(
            last_attempt_at=previous, last_error=_error_text(exc, key), updated_at=timezone.now()
        )
        logger.warning("%s/%s %s issue not sent: %s", key.kind, key.environment, key.name, _error_text(exc, key))
        raise
    except Exception as exc:
        _rows(key).update(last_error=_error_text(exc, key), updated_at=timezone.now())
        logger.warning("%s/%s %s issue failed: %s", key.kind, key.environment, key.name, _error_text(exc, key))
        raise
    with transaction.atomic():
        now = timezone.now()
        _rows(key).update(
            value_encrypted=encrypt_value(issued.value),
            issued_at=now,
            expires_at=issued.expires_at,
            last_error="",
            updated_at=now,
        )
    logger.info("%s/%s %s issued, expires %s", key.kind, key.environment, key.name, issued.expires_at.isoformat())
    return issued


def _error_text(exc: BaseException, key: TokenKey) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if key.credential:
        text = text.replace(key.credential, MASK)
    return mask_text(text)[:LAST_ERROR_MAX]
