"""Broker credentials encrypted at rest with MultiFernet.

Stored form: ``enc:v1:<fernet token>``. ``BROKER_ENCRYPTION_KEYS`` lists the
keys newest first: the first encrypts, all decrypt, so a new key can be put in
front and ``rotate_broker_keys`` re-encrypts every row under it before the old
one is dropped.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

PREFIX = "enc:v1:"


class CredentialError(Exception):
    """A stored secret could not be decrypted (wrong or missing key)."""


def generate_key() -> str:
    return Fernet.generate_key().decode()


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise CredentialError("BROKER_ENCRYPTION_KEYS is empty.")
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise CredentialError("BROKER_ENCRYPTION_KEYS holds a malformed key.") from exc


def _current() -> MultiFernet:
    return _fernet(tuple(k.strip() for k in settings.BROKER_ENCRYPTION_KEYS if k.strip()))


def encrypt_value(plaintext: str) -> str:
    return PREFIX + _current().encrypt(plaintext.encode()).decode()


def decrypt_value(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise CredentialError("Value is not in the enc:v1: form.")
    try:
        return _current().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise CredentialError("No configured key decrypts this value.") from exc


def rotate_value(stored: str) -> str:
    """Re-encrypt under the newest key (MultiFernet.rotate keeps the timestamp)."""
    if not stored.startswith(PREFIX):
        raise CredentialError("Value is not in the enc:v1: form.")
    try:
        return PREFIX + _current().rotate(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise CredentialError("No configured key decrypts this value.") from exc


def encrypt_json(data: dict[str, Any]) -> str:
    return encrypt_value(json.dumps(data, sort_keys=True, separators=(",", ":")))


def decrypt_json(stored: str) -> dict[str, Any]:
    if not stored:
        return {}
    return json.loads(decrypt_value(stored))
