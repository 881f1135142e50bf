"""Users and API keys: every write goes through here."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, ApiKeyScope, User
from accounts.revocation import credentials_revoked_notify
from core.exceptions import Forbidden, InvalidInput, NotFound, Throttled
from core.ratelimit import parse_rate, rate_count, rate_hit

logger = logging.getLogger(__name__)

KEY_PREFIX = "tt_"
_PREFIX_LEN = 8  # public part, unique, used to find the row
_SECRET_BYTES = 32  # 256 bits: a fast hash is enough for a secret this strong


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    key: str  # the plaintext, returned once and never stored


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split_key(raw: str) -> tuple[str, str] | None:
    if not raw.startswith(KEY_PREFIX):
        return None
    body = raw[len(KEY_PREFIX) :]
    prefix, sep, secret = body.partition("_")
    if not sep or len(prefix) != _PREFIX_LEN or not secret:
        return None
    return prefix, secret


def user_create(*, email: str, password: str | None, is_staff: bool = False, is_superuser: bool = False) -> User:
    email = email.strip().lower()
    if User.objects.filter(email=email).exists():
        raise InvalidInput("A user with this email exists.", fields={"email": ["Already registered."]})
    if is_superuser:
        return User.objects.create_superuser(email=email, password=password)
    return User.objects.create_user(email=email, password=password, is_staff=is_staff)


_USER_EDITABLE_FIELDS = ("email", "first_name", "last_name", "is_active", "is_staff", "is_superuser")


def user_get_by_email(*, email: str) -> User:
    user = User.objects.filter(email=email.strip().lower()).first()
    if user is None:
        raise NotFound("No user with this email.")
    return user


def user_update(*, user: User, **changes: object) -> User:
    """Change a user's profile and flags. Passwords change through Django's own
    password forms (``set_password``), never here."""
    unknown = set(changes) - set(_USER_EDITABLE_FIELDS)
    if unknown:
        raise InvalidInput(fields={k: ["Unknown or read-only field."] for k in sorted(unknown)})
    if "email" in changes:
        email = str(changes["email"]).strip().lower()
        if not email:
            raise InvalidInput(fields={"email": ["This field may not be blank."]})
        if User.objects.filter(email=email).exclude(pk=user.pk).exists():
            raise InvalidInput("A user with this email exists.", fields={"email": ["Already registered."]})
        changes["email"] = email
    if not changes:
        return user
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        deactivated = locked.is_active and changes.get("is_active") is False
        for key, value in changes.items():
            setattr(locked, key, value)
        locked.save(update_fields=list(changes))
        if deactivated:  # its open WebSocket connections close at once
            transaction.on_commit(lambda: credentials_revoked_notify(user_id=locked.pk))
    return locked


def api_key_create(
    *,
    user: User,
    name: str,
    scope: str = ApiKeyScope.READ,
    expires_at: datetime | None = None,
    manage_keys: bool = False,
    parent: ApiKey | None = None,
) -> IssuedApiKey:
    """Issue a key. The plaintext is in the result and nowhere else.

    ``parent`` is the key asking (an API client with the ``keys`` scope): the
    new key is never wider than it (scope, ``keys`` scope, expiry) and is
    revoked with it."""
    if scope not in ApiKeyScope.values:
        raise InvalidInput(fields={"scope": [f"Must be one of {', '.join(ApiKeyScope.values)}."]})
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput(fields={"expires_at": ["Must be in the future."]})
    name = name.strip()
    if not name:
        raise InvalidInput(fields={"name": ["This field may not be blank."]})
    if parent is not None:
        expires_at = _no_wider_than(parent, scope=scope, manage_keys=manage_keys, expires_at=expires_at)
    for _ in range(5):
        prefix = secrets.token_hex(_PREFIX_LEN // 2)
        if not ApiKey.objects.filter(prefix=prefix).exists():
            break
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    api_key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=prefix,
        secret_hash=hash_secret(secret),
        scope=scope,
        manage_keys=manage_keys,
        parent=parent,
        expires_at=expires_at,
    )
    return IssuedApiKey(api_key=api_key, key=f"{KEY_PREFIX}{prefix}_{secret}")


def _no_wider_than(parent: ApiKey, *, scope: str, manage_keys: bool, expires_at: datetime | None) -> datetime | None:
    """The expiry the child gets; Forbidden if it would be wider than its parent."""
    if not parent.manage_keys:
        raise Forbidden("Creating keys needs the dashboard session or a key with the keys scope.")
    if scope == ApiKeyScope.TRADE and not parent.can_trade:
        raise Forbidden(
            "A key cannot create a key wider than itself: this key has no trade scope.", fields={"scope": ["Wider than this key."]}
        )
    if parent.expires_at is not None:
        if expires_at is None:
            return parent.expires_at  # a child never outlives its parent
        if expires_at > parent.expires_at:
            raise Forbidden(
                "A key cannot create a key that outlives it.", fields={"expires_at": [f"At most {parent.expires_at.isoformat()}."]}
            )
    return expires_at


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key and every key created from it; revoking twice is harmless.
    Their open WebSocket connections are closed once this commits."""
    now = timezone.now()
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        family = [locked.pk]
        frontier = [locked.pk]
        while frontier:  # the keys it created, theirs, and so on
            frontier = list(ApiKey.objects.filter(parent_id__in=frontier).values_list("pk", flat=True))
            family.extend(frontier)
        ApiKey.objects.filter(pk__in=family, revoked_at__isnull=True).update(revoked_at=now)
        transaction.on_commit(lambda: credentials_revoked_notify(api_key_ids=family))
    locked.refresh_from_db()
    return locked


def credentials_valid(*, user_id: int, api_key_id: int | None) -> bool:
    """Whether a connection authenticated as this user (and key) may still act:
    re-read from the database, so a revocation anywhere counts at once."""
    if api_key_id is None:
        return User.objects.filter(pk=user_id, is_active=True).exists()
    api_key = ApiKey.objects.select_related("user").filter(pk=api_key_id, user_id=user_id).first()
    return api_key is not None and api_key.is_active and api_key.user.is_active


def api_key_get(*, api_key_id: int | None = None, prefix: str | None = None) -> ApiKey:
    """One key by id or by its public prefix (``abcd1234`` or ``tt_abcd1234``)."""
    if (api_key_id is None) == (prefix is None):
        raise InvalidInput("Give exactly one of an API key id and a prefix.")
    if prefix is not None:
        prefix = prefix.strip()
        if prefix.startswith(KEY_PREFIX):
            prefix = prefix[len(KEY_PREFIX) :].partition("_")[0]
        api_key = ApiKey.objects.filter(prefix=prefix).first() if prefix else None
    else:
        assert api_key_id is not None  # exactly one of the two, checked above
        api_key = ApiKey.objects.filter(pk=api_key_id).first()
    if api_key is None:
        raise NotFound("No such API key.")
    return api_key


def api_key_revoke_for_user(*, user: User, api_key_id: int, by_key: ApiKey | None = None) -> ApiKey:
    """Revoke one of ``user``'s keys. A key (``by_key``, with the keys scope)
    may revoke itself and the keys it created, not its parent or siblings."""
    api_key = ApiKey.objects.filter(user=user, pk=api_key_id).first()
    if api_key is None:
        raise NotFound("No such API key.")
    if by_key is not None:
        if not by_key.manage_keys:
            raise Forbidden("Revoking keys needs the dashboard session or a key with the keys scope.")
        ancestor: ApiKey | None = api_key
        while ancestor is not None and ancestor.pk != by_key.pk:
            ancestor = ancestor.parent
        if ancestor is None:
            raise Forbidden("A key may revoke itself and the keys it created only.")
    return api_key_revoke(api_key=api_key)


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key matching ``raw_key``, or None. Constant-time compare."""
    parts = _split_key(raw_key.strip())
    if parts is None:
        return None
    prefix, secret = parts
    # The prefix is unique: no ORDER BY (``first()`` would add one); key and user in one query.
    api_key = next(iter(ApiKey.objects.select_related("user").filter(prefix=prefix)[:1]), None)
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, hash_secret(secret)):
        return None
    if not api_key.is_active or not api_key.user.is_active:
        return None
    _touch_last_used(api_key)
    return api_key


def api_key_authenticate_from(*, raw_key: str, address: str) -> ApiKey | None:
    """``api_key_authenticate`` for a client at ``address``, whose failed attempts
    are counted (``THROTTLE_AUTH_FAILURES``): past the limit every attempt from
    that address, right or wrong, raises ``Throttled`` until the window ends, so
    guessing keys costs a window per few guesses."""
    limit, period = parse_rate(settings.THROTTLE_AUTH_FAILURES)
    counter = f"auth_failures:{address}"
    try:
        seen = rate_count(counter)
    except Exception:  # the shared counter (Redis) is down: keys are still checked
        logger.warning("auth failure counter unavailable", exc_info=True)
        return api_key_authenticate(raw_key=raw_key)
    if seen.count >= limit:
        raise Throttled("Too many failed authentications from this address.", retry_after=seen.retry_after)
    api_key = api_key_authenticate(raw_key=raw_key)
    if api_key is None:
        try:
            hit = rate_hit(counter, period)
        except Exception:
            logger.warning("auth failure counter unavailable", exc_info=True)
            return None
        if hit.count > limit:
            raise Throttled("Too many failed authentications from this address.", retry_after=hit.retry_after)
    return api_key


def _touch_last_used(api_key: ApiKey) -> None:
    # One write per key per resolution window, not one per request.
    now = timezone.now()
    window = timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION)
    if api_key.last_used_at is None or now - api_key.last_used_at >= window:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
