"""DRF authentication: ``X-API-Key`` header, and the session with CSRF enforced."""

from __future__ import annotations

from rest_framework import authentication, exceptions, throttling
from rest_framework.request import Request

from accounts.models import ApiKey, User
from accounts.services import api_key_authenticate_from

API_KEY_HEADER = "X-API-Key"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``X-API-Key: tt_<prefix>_<secret>``. ``request.auth`` is the ApiKey row."""

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        raw = request.headers.get(API_KEY_HEADER)
        if raw is None:
            return None
        # DRF's notion of the client address (REMOTE_ADDR, or X-Forwarded-For
        # behind NUM_PROXIES trusted proxies), as its throttles use.
        address = throttling.BaseThrottle().get_ident(request)
        api_key = api_key_authenticate_from(raw_key=raw, address=address)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'ApiKey realm="api"'


class CsrfSessionAuthentication(authentication.SessionAuthentication):
    """The dashboard's session. DRF enforces CSRF on unsafe methods for it."""
