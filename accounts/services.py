"""Users and API keys: every write goes through here."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, ApiKeyScope, User
from core.exceptions import InvalidInput, NotFound

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
        for key, value in changes.items():
            setattr(locked, key, value)
        locked.save(update_fields=list(changes))
    return locked


def api_key_create(
    *,
    user: User,
    name: str,
    scope: str = ApiKeyScope.READ,
    expires_at: datetime | None = None,
) -> IssuedApiKey:
    """Issue a key. The plaintext is in the result and nowhere else."""
    if scope not in ApiKeyScope.values:
        raise InvalidInput(fields={"scope": [f"Must be one of {', '.join(ApiKeyScope.values)}."]})
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput(fields={"expires_at": ["Must be in the future."]})
    name = name.strip()
    if not name:
        raise InvalidInput(fields={"name": ["This field may not be blank."]})
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
        expires_at=expires_at,
    )
    return IssuedApiKey(api_key=api_key, key=f"{KEY_PREFIX}{prefix}_{secret}")


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key; revoking twice is harmless."""
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.save(update_fields=["revoked_at"])
    return locked


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


def api_key_revoke_for_user(*, user: User, api_key_id: int) -> ApiKey:
    api_key = ApiKey.objects.filter(user=user, pk=api_key_id).first()
    if api_key is None:
        raise NotFound("No such API key.")
    return api_key_revoke(api_key=api_key)


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key matching ``raw_key``, or None. Constant-time compare."""
    parts = _split_key(raw_key.strip())
    if parts is None:
        return None
    prefix, secret = parts
    api_key = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, hash_secret(secret)):
        return None
    if not api_key.is_active or not api_key.user.is_active:
        return None
    _touch_last_used(api_key)
    return api_key


def _touch_last_used(api_key: ApiKey) -> None:
    # One write per key per resolution window, not one per request.
    now = timezone.now()
    window = timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION)
    if api_key.last_used_at is None or now - api_key.last_used_at >= window:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
