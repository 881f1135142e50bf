"""DRF authentication: ``X-API-Key`` header, and the session with CSRF enforced."""

from __future__ import annotations

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.models import ApiKey, User
from accounts.services import api_key_authenticate

API_KEY_HEADER = "X-API-Key"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``X-API-Key: tt_<prefix>_<secret>``. ``request.auth`` is the ApiKey row."""

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        raw = request.headers.get(API_KEY_HEADER)
        if raw is None:
            return None
        api_key = api_key_authenticate(raw_key=raw)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'ApiKey realm="api"'


class CsrfSessionAuthentication(authentication.SessionAuthentication):
    """The dashboard's session. DRF enforces CSRF on unsafe methods for it."""
