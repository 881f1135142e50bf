"""Masking of secrets in anything that is logged or stored as a raw payload."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

# Substrings of key names whose values are secrets. "key" alone is too broad
# (idempotency keys, sort keys), so API keys are named explicitly.
_SENSITIVE_PARTS = (
    "secret",
    "password",
    "passwd",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "appkey",
    "app_key",
    "authorization",
    "cookie",
    "credential",
    "approval_key",
    "private_key",
    "session",
    "checksum",
)

_TEXT_PATTERNS = [
    # API keys of this project: keep the public prefix, hide the secret.
    (re.compile(r"\b(tt_[A-Za-z0-9]{8})_[A-Za-z0-9_-]{16,}"), r"\1_" + MASK),
    (re.compile(r"(?i)(x-api-key|authorization|cookie|set-cookie)(\s*[:=]\s*)([^\s,;]+(?:\s+[^\s,;]+)?)"), r"\1\2" + MASK),
    (
        re.compile(
            r"(?i)([\"']?(?:password|secret|token|api_key|apikey|app_key|appkey|appsecret|app_secret|access_token|credentials)[\"']?\s*[:=]\s*)([\"'])(.*?)\2"
        ),
        r"\1\2" + MASK + r"\2",
    ),
    (re.compile(r"enc:v1:[A-Za-z0-9_=-]+"), "enc:v1:" + MASK),
]


def is_sensitive_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in _SENSITIVE_PARTS)


def mask_secrets(value: Any) -> Any:
    """Return a copy of ``value`` with secret-looking fields replaced by ``***``."""
    if isinstance(value, Mapping):
        return {
            k: (MASK if isinstance(k, str) and is_sensitive_key(k) and v not in (None, "") else mask_secrets(v)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def mask_text(text: str) -> str:
    for pattern, repl in _TEXT_PATTERNS:
        text = pattern.sub(repl, text)
    return text
